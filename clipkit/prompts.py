"""Class prompts as token sequences: templates, learnable-context slots, and the prefix every class shares.

Every prompted CLIP trainer turns class names into token ids once per class set. Two facts make the text
tower cheap, both exact under CLIP's causal text attention:
- nothing after the last end-of-text token can change an end-of-text feature, so sequences are cut there
  (CLIP pads to 77 tokens; class prompts are ~10-25);
- positions before the first one that differs between classes (start-of-text, a shared learnable context,
  the template's leading words "a photo of a") see only each other, so their rows are the same for every
  class and are computed once (``shared`` below; :func:`clipkit.surgery.prefixed_block`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .loader import clip_module

CLASS_TOKEN_POSITIONS = ("end", "middle", "front")
PLACEHOLDER = "X"  # CoOp's stand-in word for a learnable context token


def class_prompts(classnames: Sequence[str], template: str) -> list[str]:
    return [template.format(name.replace("_", " ")) for name in classnames]


def tokenize(prompts: Sequence[str], context_length: int) -> torch.Tensor:
    """``[n, context_length]`` token ids (long prompts are truncated, keeping the end-of-text token)."""
    return clip_module().tokenize(list(prompts), context_length=context_length, truncate=True)


def _name_lengths(classnames: Sequence[str], context_length: int) -> list[int]:
    ids = tokenize([n.replace("_", " ") for n in classnames], context_length)
    return [int(i.argmax()) - 1 for i in ids]  # tokens between start- and end-of-text


@dataclass
class ClassPrompts:
    """Token ids of one prompt per class, cut after the last end-of-text token.

    ``ctx_index[c, l]`` is ``-1`` where the token embedding is used and ``j >= 0`` where learnable context
    vector ``j`` goes; ``shared`` is the number of leading positions identical for every class (at least 1,
    the start-of-text token; never past an end-of-text token).
    """

    ids: torch.Tensor  # [C, L] long
    eot: torch.Tensor  # [C] long: end-of-text positions
    ctx_index: torch.Tensor  # [C, L] long
    shared: int
    texts: tuple[str, ...] = ()

    @property
    def n_ctx(self) -> int:
        return int(self.ctx_index.max()) + 1 if self.ctx_index.numel() and self.ctx_index.max() >= 0 else 0

    def to(self, device) -> ClassPrompts:
        return ClassPrompts(self.ids.to(device), self.eot.to(device), self.ctx_index.to(device), self.shared,
                            self.texts)

    @staticmethod
    def from_ids(ids: torch.Tensor, ctx_index: torch.Tensor | None = None, context_shared: bool = True,
                 texts: Sequence[str] = ()) -> ClassPrompts:
        """Cut ``ids [C, 77]`` after the last end-of-text token and find the shared prefix.

        ``context_shared``: the context vectors are the same for every class (not CoOp's class-specific
        context), so context positions may belong to the shared prefix.
        """
        eot = ids.argmax(dim=-1)  # the end-of-text token has the largest id
        length = int(eot.max()) + 1
        ids = ids[:, :length].clone()
        ctx_index = torch.full_like(ids, -1) if ctx_index is None else ctx_index[:, :length].clone()
        same = (ids == ids[:1]).all(dim=0) & (ctx_index == ctx_index[:1]).all(dim=0)
        if not context_shared:
            same &= (ctx_index < 0).all(dim=0)
        shared = 1
        while shared < min(int(eot.min()), length) and bool(same[shared]):
            shared += 1
        return ClassPrompts(ids, eot, ctx_index, shared, tuple(texts))


def template_prompts(classnames: Sequence[str], template: str, context_length: int) -> ClassPrompts:
    """``template.format(name)`` per class, no learnable context (zero-shot CLIP, DeAR, MMRL)."""
    texts = class_prompts(classnames, template)
    return ClassPrompts.from_ids(tokenize(texts, context_length), texts=texts)


def context_prompts(classnames: Sequence[str], n_ctx: int, context_length: int, ctx_init: str = "",
                    position: str = "end", class_specific: bool = False) -> ClassPrompts:
    """CoOp's prompt layout: ``[SOS] ctx_1 .. ctx_n name . [EOS]`` with the context at ``position``.

    With ``ctx_init`` (e.g. ``"a photo of a"``) the prompt text is ``"{ctx_init} {name}."`` and the context
    occupies the ``n_ctx`` positions after start-of-text (the official code takes the first ``n_ctx``
    tokens of ``ctx_init`` there); otherwise ``n_ctx`` placeholder words. ``middle`` splits the context
    in two halves around the class tokens, ``front`` puts the class tokens first; both keep the end-of-text
    position, as in CoOp (which rearranges embeddings after tokenising with the context in front).
    """
    if position not in CLASS_TOKEN_POSITIONS:
        raise ValueError(f"class token position {position!r} is not one of {CLASS_TOKEN_POSITIONS}")
    prefix = ctx_init if ctx_init else " ".join([PLACEHOLDER] * n_ctx)
    texts = [f"{prefix} {name.replace('_', ' ')}." for name in classnames]
    ids = tokenize(texts, context_length)
    c, length = ids.shape
    ctx_index = torch.full_like(ids, -1)
    ctx_index[:, 1:1 + n_ctx] = torch.arange(n_ctx)
    if position != "end":
        name_lens = _name_lengths(classnames, context_length)
        half = n_ctx // 2
        for i, n in enumerate(name_lens):
            order = list(range(length))
            ctx = order[1:1 + n_ctx]
            name = order[1 + n_ctx:1 + n_ctx + n]
            rest = order[1 + n_ctx + n:]
            arranged = [0] + (ctx[:half] + name + ctx[half:] if position == "middle" else name + ctx) + rest
            ids[i] = ids[i, arranged]
            ctx_index[i] = ctx_index[i, arranged]
    return ClassPrompts.from_ids(ids, ctx_index, context_shared=not class_specific, texts=texts)
