"""Role-based attention masks: pure functions from (roles of one layer, token layout) to ``[heads, L, L]``.

Token layout: ``n_orig`` original tokens (e.g. [CLS] + patches) at positions ``0..n_orig-1``, then ``K``
prompt tokens; ``tokens[k]`` is the concept token ``k`` stands for (DeAR's attribute tokens: ``"color"``, ...)
or ``None`` for a prompt with no concept (the deep prompts of IVLP, MaPLe, PromptSRC, MMRL's representation
tokens). Entries are additive: 0 lets row i attend to column j, ``-inf`` blocks it. Rules per head:
- generalization / other specialized: originals and prompts never see each other (both ways);
- attribute head of attribute ``a``: the prompt standing for ``a`` exchanges attention with the originals,
  prompts standing for other concepts are cut off from them in that head; prompts with no concept are let
  in or kept out by ``attribute_heads`` (``"open"`` / ``"closed"``);
- mixed: fully open.
Among themselves prompts follow ``attr_interaction``: ``"self"`` (each sees only itself; DeAR's default) or
``"all"`` (they see each other in every head, as deep prompts do in the methods that have them). Every row
keeps a finite entry: originals see originals, a prompt always sees itself.
"""
from __future__ import annotations

import random
from typing import Sequence

import torch

from .roles import ROLES, HeadRole, HeadRoles

ABLATIONS = ("role", "none", "generalization_only", "random_shuffle", "isolate_all")
ATTR_INTERACTIONS = ("self", "all")
ATTRIBUTE_HEAD_POLICIES = ("open", "closed")


def role_mask(
    layer_roles: Sequence[HeadRole],
    tokens: Sequence[str | None],
    n_orig: int,
    attr_interaction: str = "self",
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    attribute_heads: str = "open",
) -> torch.Tensor:
    """Additive mask ``[heads, n_orig + K, n_orig + K]`` for one layer; ``K = len(tokens)``."""
    if attr_interaction not in ATTR_INTERACTIONS:
        raise ValueError(f"attr_interaction={attr_interaction!r}; choose one of {ATTR_INTERACTIONS}")
    if attribute_heads not in ATTRIBUTE_HEAD_POLICIES:
        raise ValueError(f"attribute_heads={attribute_heads!r}; choose one of {ATTRIBUTE_HEAD_POLICIES}")
    heads = sorted(layer_roles, key=lambda h: h.head)
    if [h.head for h in heads] != list(range(len(heads))):
        raise ValueError(f"layer_roles must cover heads 0..H-1 exactly once, got {[h.head for h in heads]}")
    tokens = list(tokens)
    k = len(tokens)
    n = n_orig + k
    # allowed[h, i, j]: may token i attend to token j in head h
    allowed = torch.zeros(len(heads), n, n, dtype=torch.bool)
    allowed[:, :n_orig, :n_orig] = True
    prompt = torch.arange(n_orig, n)
    if attr_interaction == "all":
        allowed[:, n_orig:, n_orig:] = True
    else:
        allowed[:, prompt, prompt] = True
    generic = [n_orig + i for i, c in enumerate(tokens) if c is None]
    for h in heads:
        if h.role == "mixed":
            allowed[h.head] = True
        elif h.role == "attribute":
            let_in = [n_orig + i for i, c in enumerate(tokens) if c == h.concept]
            if attribute_heads == "open":
                let_in += generic
            for t in let_in:
                allowed[h.head, t, :n_orig] = True
                allowed[h.head, :n_orig, t] = True
        # isolated heads keep only the blocks set above
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
    mask.masked_fill_(~allowed.to(mask.device), float("-inf"))
    return mask


def role_masks(
    roles: HeadRoles,
    layers: Sequence[int],
    n_orig: int,
    tokens: Sequence[str | None],
    num_heads: int,
    attr_interaction: str = "self",
    dtype: torch.dtype = torch.float32,
    attribute_heads: str = "open",
) -> list[torch.Tensor | None]:
    """The mask of each of ``layers`` (1-based) for ``n_orig`` originals followed by ``tokens``.

    The one place a trainer gets its masks from: a layer the roles file lists gets :func:`role_mask`
    (``[heads, L, L]``); a layer it does not cover gets ``None`` (no mask: every head open).
    """
    return [role_mask(roles.layer(layer), tokens, n_orig, attr_interaction, dtype, attribute_heads=attribute_heads)
            if layer in roles.layers else None for layer in layers]


def open_mask(num_heads: int, n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """An all-open mask ``[heads, n, n]`` (what ``None`` means), for code that needs a tensor."""
    return torch.zeros(num_heads, n, n, dtype=dtype)


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
