"""Head roles for any prompt learner: the keys a trainer adds to route its prompts per attention head, and
the masks and identity they imply.

A trainer whose prompts reach the vision encoder's attention inherits :class:`RoleRouting` in its settings
(``ROLES_FILE``, ``MASK``, ``MASK_SEED``, ``ATTRIBUTE_HEADS``). ``MASK none`` (the default) is the official
method. Otherwise, in the layers the roles file covers, generalization and other-specialized heads never
exchange attention with the prompts, mixed heads are open, and attribute heads let the prompts in
(``ATTRIBUTE_HEADS open``) or keep them out (``closed``); layers the file does not cover are open.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from head_roles import ABLATIONS, ablate, load_roles, role_masks
from head_roles.masks import ATTRIBUTE_HEAD_POLICIES

from .config import Settings, key
from .loader import describe_backbone


@dataclass(frozen=True)
class RoleRouting(Settings):
    """Keys shared by every trainer that can route its prompts by head role (inherit, don't instantiate)."""

    ROLES_FILE: str = key("", "head-roles JSON for routed prompts (MASK != none); empty: head_roles/<backbone>.json")
    MASK: str = key("none", "none (the official method) | role | generalization_only | random_shuffle | isolate_all",
                    choices=ABLATIONS, identity=True)
    MASK_SEED: int = key(0, "seed of the random_shuffle ablation")
    ATTRIBUTE_HEADS: str = key("open", "attribute heads and these prompts (which stand for no attribute): "
                                       "open | closed", choices=ATTRIBUTE_HEAD_POLICIES, identity=True)


def routing_masks(settings: RoleRouting, backbone_name: str, clip_model, layers: Sequence[int], n_tokens: int,
                  ) -> tuple[list[torch.Tensor | None], dict[str, Any]]:
    """Per layer of ``layers`` (1-based, the layers whose input holds the prompts) the mask for the original
    tokens followed by ``n_tokens`` prompts, or ``None``; and what the learner's identity must add."""
    if settings.MASK == "none":
        return [None] * len(layers), {}
    info = describe_backbone(clip_model)
    roles = load_roles(settings.ROLES_FILE or backbone_name)
    roles.check_backbone(info["layers"], info["heads"], info["width"])
    masked = ablate(roles, settings.MASK, settings.MASK_SEED)
    n_orig = clip_model.visual.positional_embedding.shape[0]
    masks = role_masks(masked, layers, n_orig, [None] * n_tokens, info["heads"], attr_interaction="all",
                       attribute_heads=settings.ATTRIBUTE_HEADS)
    print(f"Head roles: {roles.source} (digest {roles.digest[:12]}, mask={settings.MASK}, "
          f"attribute heads {settings.ATTRIBUTE_HEADS}); routed layers "
          f"{[layer for layer, m in zip(layers, masks) if m is not None]}")
    return masks, {"roles": masked.digest}
