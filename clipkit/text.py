"""Frozen CLIP text features of class prompts (zero-shot classifiers, regularisers' targets)."""
from __future__ import annotations

from typing import Sequence

import torch

from .prompts import ClassPrompts, class_prompts, tokenize

__all__ = ["class_prompts", "tokenize", "encode_prompts", "encode_class_prompts", "ensemble_features"]


@torch.no_grad()
def encode_class_prompts(clip_model, prompts: ClassPrompts, batch_size: int = 512, normalize: bool = True,
                         ) -> torch.Tensor:
    """Frozen text features ``[C, E]`` of tokenised prompts (cut, shared prefix once), L2-normalised unless
    ``normalize=False``."""
    from .surgery import TextTower

    tower = TextTower(clip_model)
    device = clip_model.token_embedding.weight.device
    x = tower.embed(prompts.ids.to(device))  # [C, L, D]
    p = x[:1, :prompts.shared]
    feats = [tower.run_prefixed(p, x[i:i + batch_size, prompts.shared:], prompts.eot[i:i + batch_size].to(device))
             for i in range(0, x.shape[0], batch_size)]
    feats = torch.cat(feats).float()
    return feats / feats.norm(dim=-1, keepdim=True) if normalize else feats


@torch.no_grad()
def encode_prompts(clip_model, prompts: Sequence[str], device: torch.device | None = None,
                   batch_size: int = 512) -> torch.Tensor:
    """L2-normalised frozen text features ``[n, embed_dim]`` of prompt strings."""
    ids = tokenize(list(prompts), clip_model.context_length)
    feats = [encode_class_prompts(clip_model, ClassPrompts.from_ids(ids[i:i + batch_size]))
             for i in range(0, len(ids), batch_size)]
    return torch.cat(feats)


@torch.no_grad()
def ensemble_features(clip_model, classnames: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
    """Per class, the mean over ``templates`` of frozen CLIP's *unnormalised* text features ``[C, E]``
    (PromptSRC's textual diversity; normalise before use)."""
    from .prompts import template_prompts

    total = None
    for t in templates:
        f = encode_class_prompts(clip_model, template_prompts(classnames, t, clip_model.context_length),
                                 normalize=False)
        total = f if total is None else total + f
    return total / len(templates)
