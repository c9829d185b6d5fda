"""CLIP's residual attention blocks run in an explicit loop, with per-head masks and injected tokens.

Nothing here copies or edits ``clip/model.py``: :func:`block_forward` runs an OpenAI
``ResidualAttentionBlock`` with its own weights, taking the attention mask as an argument (the block's
stored ``attn_mask`` is ignored), and the two towers wrap ``clip_model.visual`` / ``clip_model`` by
reference, so the pretrained weights are shared and ``encode_image``/``encode_text`` keep working.

Sequences are batch-first inside this module: ``x: [B, L, D]``. Masks are additive floats (``0`` open,
``-inf`` blocked) of shape ``[L, L]`` (all heads), ``[H, L, L]`` (per head, shared by the batch) or
``[B, H, L, L]``; they are broadcast to ``[B, H, L, L]`` for ``scaled_dot_product_attention``, so there is
no ``(batch*heads)`` flattening to get wrong.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


def attention(attn: nn.MultiheadAttention, x: torch.Tensor, mask: torch.Tensor | None = None,
              return_heads: bool = False, rows: Sequence[int] | None = None):
    """Multi-head self-attention of ``attn``'s weights on ``x: [B, L, D]``.

    Returns ``[B, L, D]``; with ``return_heads`` also each head's contribution to it, ``[B, H, L, D]``
    (their sum plus the output bias is the output). With ``rows``, only those query positions are
    computed (keys and values still come from every token): ``[B, len(rows), D]``.
    """
    b, n, d = x.shape
    h = attn.num_heads
    if rows is None:
        qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias)  # [B, L, 3D]
        q, k, v = qkv.view(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)  # each [B, H, L, d]
    else:
        w, bias = attn.in_proj_weight, attn.in_proj_bias
        q = F.linear(x[:, list(rows)], w[:d], bias[:d]).view(b, len(rows), h, d // h).transpose(1, 2)
        k, v = F.linear(x, w[d:], bias[d:]).view(b, n, 2, h, d // h).permute(2, 0, 3, 1, 4)
    if mask is not None:
        mask = mask.to(dtype=q.dtype)
        while mask.dim() < 4:
            mask = mask.unsqueeze(0)  # [L, L] -> [1, 1, L, L]; [H, L, L] -> [1, H, L, L]
        if rows is not None:
            mask = mask[:, :, list(rows)]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [B, H, L or R, d]
    merged = out.transpose(1, 2).reshape(b, q.shape[2], d)
    y = F.linear(merged, attn.out_proj.weight, attn.out_proj.bias)
    if not return_heads:
        return y
    w = attn.out_proj.weight.view(d, h, d // h)  # [D_out, H, d]
    per_head = torch.einsum("bhld,ehd->bhle", out, w)  # [B, H, L, D]
    return y, per_head


def block_forward(block: nn.Module, x: torch.Tensor, mask: torch.Tensor | None = None,
                  return_heads: bool = False, rows: Sequence[int] | None = None):
    """One OpenAI ``ResidualAttentionBlock`` on ``x: [B, L, D]`` with ``mask`` passed in.

    With ``rows``, only the outputs at those positions are computed and returned (``[B, len(rows), D]``):
    exact, and much cheaper for a last block whose other outputs are never read.
    """
    if rows is not None:
        y = x[:, list(rows)] + attention(block.attn, block.ln_1(x), mask, rows=rows)
        return y + block.mlp(block.ln_2(y))
    if return_heads:
        a, per_head = attention(block.attn, block.ln_1(x), mask, return_heads=True)
    else:
        a = attention(block.attn, block.ln_1(x), mask)
    x = x + a
    x = x + block.mlp(block.ln_2(x))
    return (x, per_head) if return_heads else x


def causal_mask(n: int, device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``[n, n]`` additive causal mask (CLIP's text encoder)."""
    return torch.full((n, n), float("-inf"), device=device, dtype=dtype).triu_(1)


@dataclass
class DeepOutput:
    """Result of running the deep layers: the final sequence and where the injected tokens sit in it."""

    x: torch.Tensor  # [B, L + K, D]
    token_slice: slice  # positions of the injected tokens in x

    @property
    def tokens(self) -> torch.Tensor:  # [B, K, D]
        return self.x[:, self.token_slice]


def run_blocks(blocks: Sequence[nn.Module], x: torch.Tensor, mask: torch.Tensor | None = None,
               last_rows: Sequence[int] | None = None) -> torch.Tensor:
    """Run ``blocks``; with ``last_rows`` the last block computes only those positions."""
    for i, block in enumerate(blocks):
        x = block_forward(block, x, mask, rows=last_rows if i == len(blocks) - 1 else None)
    return x


def run_injected(
    blocks: Sequence[nn.Module],
    x: torch.Tensor,
    tokens: Sequence[torch.Tensor],
    insert_at: int,
    beta: float,
    masks: Sequence[torch.Tensor | None] | torch.Tensor | None = None,
    keep_first: bool = False,
) -> DeepOutput:
    """Run ``blocks`` on ``x: [B, L, D]``, injecting learnable tokens.

    ``tokens[i]`` (``[K, D]`` or ``[B, K, D]``) is the token set of ``blocks[i]``: the first set is inserted
    at position ``insert_at``; before each later block the tokens become
    ``beta * tokens[i] + (1 - beta) * output_of_previous_block`` (the paper's knowledge anchoring).
    ``masks`` is one mask for all blocks or one per block (``None`` entries: no mask). With ``keep_first``
    the last block computes only position 0 ([CLS]) and the tokens, and ``x`` holds just those rows.
    """
    if len(tokens) != len(blocks):
        raise ValueError(f"need one token set per block: {len(tokens)} sets for {len(blocks)} blocks")
    b = x.shape[0]
    k = tokens[0].shape[-2]
    sl = slice(insert_at, insert_at + k)
    for i, block in enumerate(blocks):
        t = tokens[i].to(x.dtype)
        if t.dim() == 2:
            t = t.unsqueeze(0).expand(b, -1, -1)
        if i == 0:
            x = torch.cat([x[:, :insert_at], t, x[:, insert_at:]], dim=1)
        else:
            mixed = beta * t + (1.0 - beta) * x[:, sl]
            x = torch.cat([x[:, :insert_at], mixed, x[:, sl.stop:]], dim=1)
        mask = masks[i] if isinstance(masks, (list, tuple)) else masks
        if keep_first and i == len(blocks) - 1:
            x = block_forward(block, x, mask, rows=[0, *range(sl.start, sl.stop)])
            return DeepOutput(x, slice(1, 1 + k))
        x = block_forward(block, x, mask)
    return DeepOutput(x, sl)


class VisionTower(nn.Module):
    """The visual ViT of a CLIP model, run block by block. Holds a reference, not a copy."""

    def __init__(self, clip_model: nn.Module) -> None:
        super().__init__()
        self.visual = clip_model.visual
        if not hasattr(self.visual, "transformer"):
            raise ValueError("VisionTower needs a ViT CLIP backbone")

    @property
    def blocks(self) -> nn.ModuleList:
        return self.visual.transformer.resblocks

    @property
    def num_tokens(self) -> int:
        return self.visual.positional_embedding.shape[0]

    def embed(self, image: torch.Tensor) -> torch.Tensor:
        """``image: [B, 3, H, W]`` -> ``[B, 1 + P, D]`` ([CLS] first), after ``ln_pre``."""
        v = self.visual
        x = v.conv1(image.to(v.conv1.weight.dtype))  # [B, D, g, g]
        x = x.flatten(2).transpose(1, 2)  # [B, P, D]
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)
        return v.ln_pre(x)

    def prefix(self, image: torch.Tensor, upto: int) -> torch.Tensor:
        """Output of blocks ``[0, upto)``, i.e. of layers 1..upto counted from 1: ``[B, 1 + P, D]``."""
        return run_blocks(self.blocks[:upto], self.embed(image))

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """``ln_post`` then CLIP's visual projection: ``[..., D] -> [..., E]``."""
        return self.visual.ln_post(x) @ self.visual.proj

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Equivalent of ``clip_model.encode_image``: ``[B, E]``."""
        x = run_blocks(self.blocks, self.embed(image))
        return self.project(x[:, 0])


class TextTower(nn.Module):
    """The text transformer of a CLIP model, run block by block. Holds a reference, not a copy."""

    def __init__(self, clip_model: nn.Module) -> None:
        super().__init__()
        self.token_embedding = clip_model.token_embedding
        self.positional_embedding = clip_model.positional_embedding
        self.transformer = clip_model.transformer
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection

    @property
    def blocks(self) -> nn.ModuleList:
        return self.transformer.resblocks

    def embed(self, text: torch.Tensor) -> torch.Tensor:
        """``text: [C, L]`` token ids (``L <= 77``; shorter: padding already dropped) -> ``[C, L, D]``."""
        x = self.token_embedding(text)
        return x + self.positional_embedding[: x.shape[1]].to(x.dtype)

    def prefix(self, text: torch.Tensor, upto: int) -> torch.Tensor:
        x = self.embed(text)
        return run_blocks(self.blocks[:upto], x, causal_mask(x.shape[1], x.device, x.dtype))

    def project(self, x: torch.Tensor, eot_index: torch.Tensor) -> torch.Tensor:
        """``ln_final`` at the end-of-text positions, then the text projection: ``[C, E]``."""
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0], device=x.device), eot_index] @ self.text_projection

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        """Equivalent of ``clip_model.encode_text``: ``[C, E]``."""
        x = self.embed(text)
        x = run_blocks(self.blocks, x, causal_mask(x.shape[1], x.device, x.dtype))
        return self.project(x, text.argmax(dim=-1))

    def deep_with_tokens(self, x: torch.Tensor, text: torch.Tensor, start: int, tokens: Sequence[torch.Tensor],
                         beta: float) -> torch.Tensor:
        """Blocks ``[start, end)`` on a cached prefix ``x: [C, 77, D]``, with ``tokens`` inserted after the
        start-of-text token; returns projected features ``[C, E]`` (end-of-text index shifted by ``K``)."""
        k = tokens[0].shape[-2]
        mask = causal_mask(x.shape[1] + k, x.device, x.dtype)
        out = run_injected(self.blocks[start:], x, tokens, insert_at=1, beta=beta, masks=mask)
        return self.project(out.x, text.argmax(dim=-1) + k)
