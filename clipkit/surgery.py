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
              return_heads: bool = False, rows: Sequence[int] | None = None,
              head_rows: Sequence[int] | None = None):
    """Multi-head self-attention of ``attn``'s weights on ``x: [B, L, D]``.

    Returns ``[B, L, D]``; with ``return_heads`` also each head's contribution to it, ``[B, H, L, D]``
    (their sum plus the output bias is the output), or only at positions ``head_rows``
    (``[B, H, len(head_rows), D]``: TEXTSPAN needs [CLS] alone). With ``rows``, only those query positions
    are computed (keys and values still come from every token): ``[B, len(rows), D]``.
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
    mask = _as_4d(mask, q.dtype)  # [L, L] -> [1, 1, L, L]; [H, L, L] -> [1, H, L, L]
    if mask is not None and rows is not None:
        mask = mask[:, :, list(rows)]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [B, H, L or R, d]
    merged = out.transpose(1, 2).reshape(b, q.shape[2], d)
    y = F.linear(merged, attn.out_proj.weight, attn.out_proj.bias)
    if not return_heads:
        return y
    if head_rows is not None:
        out = out[:, :, list(head_rows)]
    w = attn.out_proj.weight.view(d, h, d // h)  # [D_out, H, d]
    per_head = torch.einsum("bhld,ehd->bhle", out, w)  # [B, H, L or len(head_rows), D]
    return y, per_head


QUICK_GELU = 1.702  # OpenAI CLIP's activation: x * sigmoid(1.702 * x)


def mlp(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``block.mlp(x)``. OpenAI's ``c_fc -> QuickGELU -> c_proj`` runs as ``silu`` with the 1.702 folded into
    the two matrix products (``x * sigmoid(1.702 x) = silu(1.702 x) / 1.702``, exact in real arithmetic):
    one elementwise pass forward and one backward instead of three and about five, which is a tenth of a
    ViT-B/16 layer on CPU. Any other activation runs the module as it is."""
    seq = block.mlp
    if type(getattr(seq, "gelu", None)).__name__ != "QuickGELU":
        return seq(x)
    fc, proj = seq.c_fc, seq.c_proj
    shape = x.shape
    h = torch.addmm(fc.bias, x.reshape(-1, shape[-1]), fc.weight.t(), beta=QUICK_GELU, alpha=QUICK_GELU)
    h = F.silu(h, inplace=not torch.is_grad_enabled())
    # the 1 / 1.702 goes on the (smaller) weight: addmm's alpha would cost a pass over h's gradient
    out = F.linear(h, proj.weight * (1.0 / QUICK_GELU), proj.bias)
    return out.view(*shape[:-1], out.shape[-1])


def block_forward(block: nn.Module, x: torch.Tensor, mask: torch.Tensor | None = None,
                  return_heads: bool = False, rows: Sequence[int] | None = None):
    """One OpenAI ``ResidualAttentionBlock`` on ``x: [B, L, D]`` with ``mask`` passed in.

    With ``rows``, only the outputs at those positions are computed and returned (``[B, len(rows), D]``):
    exact, and much cheaper for a last block whose other outputs are never read.
    """
    if rows is not None:
        y = x[:, list(rows)] + attention(block.attn, block.ln_1(x), mask, rows=rows)
        return y + mlp(block, block.ln_2(y))
    if return_heads:
        a, per_head = attention(block.attn, block.ln_1(x), mask, return_heads=True)
    else:
        a = attention(block.attn, block.ln_1(x), mask)
    x = x + a
    x = x + mlp(block, block.ln_2(x))
    return (x, per_head) if return_heads else x


def causal_mask(n: int, device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``[n, n]`` additive causal mask (CLIP's text encoder)."""
    return torch.full((n, n), float("-inf"), device=device, dtype=dtype).triu_(1)


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A bool ``allowed`` mask (``True``: may attend) as the additive float mask this module takes (0 / -inf).

    Bool masks are refused by :func:`attention`: PyTorch's ``scaled_dot_product_attention`` reads ``True``
    as "attend" and ``nn.MultiheadAttention`` reads it as "blocked", so a bool mask is ambiguous.
    """
    if allowed.dtype != torch.bool:
        raise TypeError(f"additive_mask takes a bool mask, got {allowed.dtype}")
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(~allowed, float("-inf"))


def _as_4d(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        raise TypeError("attention masks here are additive floats (0 = attend, -inf = blocked); a bool mask is "
                        "ambiguous (SDPA reads True as attend, nn.MultiheadAttention as blocked). Convert it with "
                        "clipkit.surgery.additive_mask(allowed), where allowed[i, j] is True when i may attend to j")
    mask = mask.to(dtype=dtype)
    while mask.dim() < 4:
        mask = mask.unsqueeze(0)
    return mask


def attention_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unmasked attention ``[B, H, N, d]`` and each row's log-sum-exp of scores ``[B, H, N, 1]`` (float32).

    On CPU, PyTorch's fused flash kernel returns both; elsewhere the scores are materialised.
    """
    if q.device.type == "cpu" and not torch.is_grad_enabled():
        op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
        if op is not None:
            out, lse = op(q, k, v)
            return out, lse.float().unsqueeze(-1)
    scores = (q.float() @ k.float().transpose(-1, -2)) * q.shape[-1] ** -0.5
    lse = scores.logsumexp(dim=-1, keepdim=True)
    return ((scores - lse).exp() @ v.float()).to(q.dtype), lse


def shared_first_block(block: nn.Module, x: torch.Tensor, tokens: torch.Tensor,
                       mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first injected block on ``[x, tokens]`` and the stock block on ``x``, sharing ``x``'s work.

    ``x: [B, N, D]`` is a constant (a no-grad prefix), ``tokens: [B, K, D]`` are appended after it, and
    ``mask`` (``[L, L]``, ``[H, L, L]`` or ``[B, H, L, L]`` over the ``L = N + K`` positions) must leave the
    ``N x N`` block open, as role masks do. Then ``x``'s layer norm, its Q/K/V and its ``N x N`` attention
    are identical in both runs and computed once, with no autograd graph: the rows of ``x`` in the run with
    tokens are the stock softmax merged with the ``N x K`` scores against the tokens through their
    log-sum-exp (the rescaling flash attention uses; exact). Returns ``(y [B, N + K, D], y_stock [B, N, D])``,
    the latter without grad. Saves the stock path's Q/K/V and attention at this layer, and the run with
    tokens back-propagates only through the tokens' Q/K/V.
    """
    attn = block.attn
    b, n, d = x.shape
    k = tokens.shape[1]
    h = attn.num_heads
    w, bias = attn.in_proj_weight, attn.in_proj_bias
    if x.requires_grad:
        raise ValueError("shared_first_block treats x as a constant, but x requires grad; run the prefix under "
                         "torch.no_grad() or use run_injected without with_stock")
    mask = _as_4d(mask, x.dtype)
    if mask is not None and bool((mask[..., :n, :n] != 0).any()):
        raise ValueError("shared_first_block needs the mask to leave the original tokens' N x N block open")
    with torch.no_grad():
        q, kx, vx = F.linear(block.ln_1(x), w, bias).view(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)
        stock, lse = attention_lse(q, kx, vx)  # [B, H, N, d], [B, H, N, 1]
    qt, kt, vt = F.linear(block.ln_1(tokens), w, bias).view(b, k, 3, h, d // h).permute(2, 0, 3, 1, 4)
    # rows of x: stock softmax over x's keys merged with the (masked) scores against the tokens' keys
    cross = (q @ kt.transpose(-1, -2)).float() * (d // h) ** -0.5  # [B, H, N, K]
    if mask is not None:
        cross = cross + mask[..., :n, n:].float()
    top = torch.maximum(lse, cross.detach().amax(dim=-1, keepdim=True))  # for a stable exp; exact
    w_stock = (lse - top).exp()  # [B, H, N, 1]
    e = (cross - top).exp()  # [B, H, N, K]; 0 where the mask blocks
    rows_x = (stock.float() * w_stock + e @ vt.float()) / (w_stock + e.sum(dim=-1, keepdim=True))
    # rows of the tokens: ordinary attention over every key
    keys, values = torch.cat([kx.to(kt.dtype), kt], dim=2), torch.cat([vx.to(vt.dtype), vt], dim=2)
    rows_t = F.scaled_dot_product_attention(qt, keys, values,
                                            attn_mask=None if mask is None else mask[..., n:, :].to(qt.dtype))
    out = torch.cat([rows_x.to(rows_t.dtype), rows_t], dim=2).transpose(1, 2).reshape(b, n + k, d)
    y = torch.cat([x, tokens], dim=1) + F.linear(out, attn.out_proj.weight, attn.out_proj.bias)
    y = y + mlp(block, block.ln_2(y))
    with torch.no_grad():
        y_stock = x + F.linear(stock.transpose(1, 2).reshape(b, n, d), attn.out_proj.weight, attn.out_proj.bias)
        y_stock = y_stock + mlp(block, block.ln_2(y_stock))
    return y, y_stock


@dataclass
class DeepOutput:
    """Result of running the deep layers: the final sequence and where the injected tokens sit in it."""

    x: torch.Tensor  # [B, L + K, D], or only the rows kept by the last block
    token_slice: slice  # positions of the injected tokens in x
    frozen: torch.Tensor | None = None  # the same blocks run without tokens (stock CLIP), if asked for

    @property
    def tokens(self) -> torch.Tensor:  # [B, K, D]
        return self.x[:, self.token_slice]


def run_blocks(blocks: Sequence[nn.Module], x: torch.Tensor, mask: torch.Tensor | None = None,
               last_rows: Sequence[int] | None = None) -> torch.Tensor:
    """Run ``blocks``; with ``last_rows`` the last block computes only those positions."""
    for i, block in enumerate(blocks):
        x = block_forward(block, x, mask, rows=last_rows if i == len(blocks) - 1 else None)
    return x


TokenSets = Sequence["torch.Tensor | None"]


def next_tokens(t: torch.Tensor, previous: torch.Tensor, beta: float) -> torch.Tensor:
    """The tokens entering a block: ``beta * t + (1 - beta) * previous`` (DeAR's anchoring); ``beta == 1``
    replaces them (deep prompts of IVLP / MaPLe / PromptSRC, MMRL's representation tokens) exactly."""
    return t if beta == 1.0 else beta * t + (1.0 - beta) * previous


def run_injected(
    blocks: Sequence[nn.Module],
    x: torch.Tensor,
    tokens: TokenSets,
    insert_at: int,
    beta: float,
    masks: Sequence[torch.Tensor | None] | torch.Tensor | None = None,
    keep_first: bool = False,
    with_stock: bool = False,
    present: bool = False,
    cls_only: bool = False,
) -> DeepOutput:
    """Run ``blocks`` on ``x: [B, L, D]`` with learnable tokens in a slot of ``K`` positions at ``insert_at``.

    ``tokens[i]`` (``[K, D]`` or ``[B, K, D]``) is the token set of ``blocks[i]``, or ``None`` to carry the
    previous block's outputs at the slot. Unless ``present`` (the slot is already in ``x``, e.g. shallow
    prompts embedded with the input), ``tokens[0]`` is inserted at ``insert_at``. Before each later block a
    given set enters as ``beta * tokens[i] + (1 - beta) * output_of_previous_block`` (:func:`next_tokens`;
    ``beta = 1`` replaces). ``masks`` is one mask for all blocks or one per block (``None``: no mask).
    The last block computes only the rows that are read: [CLS] and the slot with ``keep_first``, [CLS]
    alone with ``cls_only``. With ``with_stock`` (tokens inserted after the sequence, ``x`` a constant)
    the result also holds ``frozen``: the same blocks run on ``x`` without tokens, under no grad (only
    [CLS] with ``keep_first``/``cls_only``), sharing the first block's work (:func:`shared_first_block`).
    """
    if len(tokens) != len(blocks):
        raise ValueError(f"need one token set (or None) per block: {len(tokens)} for {len(blocks)} blocks")
    if not present and tokens[0] is None:
        raise ValueError("tokens[0] is None but the slot is not in x yet: give the first set, or present=True")
    if with_stock and (present or insert_at != x.shape[1]):
        raise ValueError("with_stock needs the tokens inserted after the sequence (insert_at == x.shape[1])")
    b = x.shape[0]
    k = next(t for t in tokens if t is not None).shape[-2] if any(t is not None for t in tokens) else 0
    sl = slice(insert_at, insert_at + k)
    last_rows = [0, *range(sl.start, sl.stop)] if keep_first else [0] if cls_only else None
    stock = None
    for i, block in enumerate(blocks):
        t = tokens[i]
        if t is not None:
            t = t.to(x.dtype)
            if t.dim() == 2:
                t = t.unsqueeze(0).expand(b, -1, -1)
        mask = masks[i] if isinstance(masks, (list, tuple)) else masks
        last = last_rows if i == len(blocks) - 1 else None
        if i == 0 and with_stock:
            x, stock = shared_first_block(block, x, t, mask)
            with torch.no_grad():
                stock = run_blocks(blocks[1:], stock, last_rows=[0] if last_rows is not None else None)
                stock = stock[:, :1] if last_rows is not None else stock
            if last is not None:  # a single block: it computed every row
                x = x[:, last]
            continue
        if i == 0 and not present:
            x = torch.cat([x[:, :insert_at], t, x[:, insert_at:]], dim=1)
        elif t is not None:
            x = torch.cat([x[:, :insert_at], next_tokens(t, x[:, sl], beta), x[:, sl.stop:]], dim=1)
        x = block_forward(block, x, mask, rows=last)
    return DeepOutput(x, slice(1, 1 + k) if keep_first else sl, stock)


def _heads(attn: nn.MultiheadAttention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Q, K, V of ``x: [N, L, D]``, each ``[N, H, L, d]``."""
    n, length, d = x.shape
    h = attn.num_heads
    qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias)
    return qkv.view(n, length, 3, h, d // h).permute(2, 0, 3, 1, 4).unbind(0)


def prefixed_block(block: nn.Module, p: torch.Tensor, s: torch.Tensor, rows: torch.Tensor | None = None,
                   ) -> tuple[torch.Tensor | None, torch.Tensor]:
    """One causal (text) block on sequences that share their first ``P`` positions.

    ``p: [G, P, D]`` are the shared rows (e.g. start-of-text + context tokens, identical for every class),
    ``s: [G*C, S, D]`` the rest of each sequence (row ``g*C + c``: class ``c`` of group ``g``). Under causal
    attention the shared rows never see the rest, so they are computed once per group instead of once per
    class (exact). With ``rows`` (``[G*C]`` positions in ``s``), only those rows of ``s`` are computed and
    ``p`` is not (a last block): returns ``(None, [G*C, 1, D])``.
    """
    attn = block.attn
    g, n_p, d = p.shape
    n, n_s, _ = s.shape
    c = n // g
    qp, kp, vp = _heads(attn, block.ln_1(p))  # [G, H, P, d]
    qs, ks, vs = _heads(attn, block.ln_1(s))  # [N, H, S, d]
    keys = torch.cat([kp.repeat_interleave(c, dim=0), ks], dim=2)  # [N, H, P + S, d]
    values = torch.cat([vp.repeat_interleave(c, dim=0), vs], dim=2)
    mask = torch.zeros(n_s, n_p + n_s, dtype=qs.dtype, device=s.device)  # the query's dtype (autocast)
    mask[:, n_p:] = causal_mask(n_s, s.device, qs.dtype)
    if rows is not None:
        idx = torch.arange(n, device=s.device)
        qs = qs[idx, :, rows].unsqueeze(2)  # [N, H, 1, d]
        mask = mask[rows].unsqueeze(1).unsqueeze(1)  # [N, 1, 1, P + S]
        s = s[idx, rows].unsqueeze(1)  # [N, 1, D]
    else:
        mask = mask.unsqueeze(0).unsqueeze(0)
    out_s = F.scaled_dot_product_attention(qs, keys, values, attn_mask=mask)
    y_s = s + F.linear(out_s.transpose(1, 2).reshape(n, -1, d), attn.out_proj.weight, attn.out_proj.bias)
    y_s = y_s + mlp(block, block.ln_2(y_s))
    if rows is not None:
        return None, y_s
    out_p = F.scaled_dot_product_attention(qp, kp, vp, is_causal=True)
    y_p = p + F.linear(out_p.transpose(1, 2).reshape(g, n_p, d), attn.out_proj.weight, attn.out_proj.bias)
    return y_p + mlp(block, block.ln_2(y_p)), y_s


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

    def shared_prefix(self, ids: torch.Tensor, shared: int, upto: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Blocks ``[0, upto)`` on class prompts ``ids: [C, L]`` whose first ``shared`` tokens are the same for
        every class: ``(p [1, shared, D], s [C, L - shared, D])`` (the shared rows once; exact)."""
        x = self.embed(ids)
        p, s = x[:1, :shared], x[:, shared:]
        for block in self.blocks[:upto]:
            p, s = prefixed_block(block, p, s)
        return p, s

    def run_prefixed(self, p: torch.Tensor, s: torch.Tensor, eot: torch.Tensor, start: int = 0,
                     tokens: TokenSets | None = None, beta: float = 1.0, present: bool = True) -> torch.Tensor:
        """Blocks ``[start, end)`` on class sequences that share their first rows, projected: ``[G*C, E]``.

        ``p: [G, P, D]`` are the rows every class shares (start-of-text first; G = 1, or one group per image
        for CoCoOp), ``s: [G*C, S, D]`` the rest, ``eot: [C]`` the end-of-text positions within the full
        sequence ``p + s`` as given (``>= P``). ``tokens`` (one entry per block, ``None`` to carry) fill
        the slot of ``K`` positions after start-of-text, as in :func:`run_injected`: inserted before the
        first block unless ``present``, then ``beta``-anchored (``beta = 1``: replaced). The last block
        computes only the end-of-text rows (exact). Equals running the full sequences (``prefixed_block``).
        """
        blocks = self.blocks[start:]
        groups, n_p = p.shape[0], p.shape[1]
        given = [t for t in (tokens or []) if t is not None]
        k = given[0].shape[-2] if given else 0
        if tokens is not None and len(tokens) != len(blocks):
            raise ValueError(f"need one token set (or None) per block: {len(tokens)} for {len(blocks)} blocks")
        rows = (eot - n_p).repeat(groups)  # [G*C]: the end-of-text rows of s
        for i, block in enumerate(blocks):
            t = tokens[i] if tokens is not None else None
            if t is not None:
                t = t.to(p.dtype)
                t = t.unsqueeze(0).expand(groups, -1, -1) if t.dim() == 2 else t
                if i == 0 and not present:
                    p = torch.cat([p[:, :1], t, p[:, 1:]], dim=1)
                else:
                    p = torch.cat([p[:, :1], next_tokens(t, p[:, 1:1 + k], beta), p[:, 1 + k:]], dim=1)
            p, s = prefixed_block(block, p, s, rows=rows if i == len(blocks) - 1 else None)
        return self.ln_final(s[:, 0]) @ self.text_projection

    def deep_with_tokens(self, x: torch.Tensor, text: torch.Tensor, start: int, tokens: Sequence[torch.Tensor],
                         beta: float) -> torch.Tensor:
        """Blocks ``[start, end)`` on a cached prefix ``x: [C, L, D]``, with ``tokens`` inserted after the
        start-of-text token; returns projected features ``[C, E]`` (end-of-text index shifted by ``K``)."""
        k = tokens[0].shape[-2]
        mask = causal_mask(x.shape[1] + k, x.device, x.dtype)
        out = run_injected(self.blocks[start:], x, tokens, insert_at=1, beta=beta, masks=mask)
        return self.project(out.x, text.argmax(dim=-1) + k)
