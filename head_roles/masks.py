"""Role-based attention masks: pure functions from (roles of one layer, token layout) to ``[heads, L, L]``.

Token layout: ``n_orig`` original tokens (e.g. [CLS] + patches) at positions ``0..n_orig-1``, then ``K``
attribute tokens, token ``k`` standing for ``attributes[k]``. Entries are additive: 0 lets row i attend
to column j, ``-inf`` blocks it. Rules per head:
- generalization / other specialized: originals and attribute tokens never see each other (both ways);
- attribute head of attribute ``a``: only token ``a`` exchanges attention with the originals; the other
  attribute tokens are cut off from the originals in that head (a head whose attribute has no token is
  isolated);
- mixed: fully open.
Among themselves attribute tokens follow ``attr_interaction``: ``"self"`` (each sees only itself, the
default) or ``"all"`` (they see each other in every head). Every row keeps a finite entry: originals see
originals, an attribute token always sees itself.
"""
from __future__ import annotations

import random
from typing import Sequence

import torch

from .roles import ROLES, HeadRole, HeadRoles

ABLATIONS = ("role", "none", "generalization_only", "random_shuffle", "isolate_all")
ATTR_INTERACTIONS = ("self", "all")


def role_mask(
    layer_roles: Sequence[HeadRole],
    attributes: Sequence[str],
    n_orig: int,
    attr_interaction: str = "self",
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Additive mask ``[heads, n_orig + K, n_orig + K]`` for one layer; ``K = len(attributes)``."""
    if attr_interaction not in ATTR_INTERACTIONS:
        raise ValueError(f"attr_interaction={attr_interaction!r}; choose one of {ATTR_INTERACTIONS}")
    heads = sorted(layer_roles, key=lambda h: h.head)
    if [h.head for h in heads] != list(range(len(heads))):
        raise ValueError(f"layer_roles must cover heads 0..H-1 exactly once, got {[h.head for h in heads]}")
    k = len(attributes)
    n = n_orig + k
    # allowed[h, i, j]: may token i attend to token j in head h
    allowed = torch.zeros(len(heads), n, n, dtype=torch.bool)
    allowed[:, :n_orig, :n_orig] = True
    attr = torch.arange(n_orig, n)
    if attr_interaction == "all":
        allowed[:, n_orig:, n_orig:] = True
    else:
        allowed[:, attr, attr] = True
    for h in heads:
        if h.role == "mixed":
            allowed[h.head] = True
        elif h.role == "attribute" and h.concept in attributes:
            t = n_orig + list(attributes).index(h.concept)
            allowed[h.head, t, :n_orig] = True
            allowed[h.head, :n_orig, t] = True
        # isolated heads (and attribute heads without a token) keep only the blocks set above
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
    mask.masked_fill_(~allowed.to(mask.device), float("-inf"))
    return mask


def role_masks(
    roles: HeadRoles,
    layers: Sequence[int],
    n_orig: int,
    attributes: Sequence[str],
    num_heads: int,
    attr_interaction: str = "self",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Masks ``[len(layers), heads, n_orig + K, n_orig + K]`` for the injected ``layers`` (1-based).

    The one place a trainer gets its masks from: layers the roles file lists get :func:`role_mask`; layers it
    does not cover are open (as if every head were mixed).
    """
    n = n_orig + len(attributes)
    masks = []
    for layer in layers:
        if layer in roles.layers:
            masks.append(role_mask(roles.layer(layer), attributes, n_orig, attr_interaction, dtype))
        else:
            masks.append(torch.zeros(num_heads, n, n, dtype=dtype))
    return torch.stack(masks)


def ablate(roles: HeadRoles, mode: str, seed: int = 0) -> HeadRoles:
    """The roles an ablation of the paper uses.

    ``role``: unchanged; ``none``: every head mixed (all open); ``generalization_only``: only generalization
    heads isolated, all others open; ``random_shuffle``: the (role, concept) pairs permuted across all heads
    with ``seed``; ``isolate_all``: every head isolated (the tokens never reach the originals).
    """
    if mode not in ABLATIONS:
        raise ValueError(f"mask ablation {mode!r} is not one of {ABLATIONS}")
    if mode == "role":
        return roles

    def _with(h: HeadRole, role: str, concept: str) -> HeadRole:
        return HeadRole(h.layer, h.head, role, concept, h.phrases, h.extra)

    if mode == "none":
        heads = [_with(h, "mixed", "none") for h in roles.heads]
    elif mode == "isolate_all":
        heads = [_with(h, "generalization", "none") for h in roles.heads]
    elif mode == "generalization_only":
        heads = [h if h.role == "generalization" else _with(h, "mixed", "none") for h in roles.heads]
    else:
        pairs = [(h.role, h.concept) for h in roles.heads]
        random.Random(seed).shuffle(pairs)
        heads = [_with(h, r, c) for h, (r, c) in zip(roles.heads, pairs)]
    assert all(h.role in ROLES for h in heads)
    return roles.replace_heads(heads, note=f"ablation={mode}, seed={seed}" if mode == "random_shuffle" else mode)
