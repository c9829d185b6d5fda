"""Tokenising class prompts and encoding them with a frozen CLIP text encoder."""
from __future__ import annotations

import torch

from .loader import clip_module


def class_prompts(classnames: list[str], template: str) -> list[str]:
    return [template.format(name.replace("_", " ")) for name in classnames]


def tokenize(prompts: list[str], context_length: int) -> torch.Tensor:
    """``[n, context_length]`` token ids (long prompts are truncated, keeping the end-of-text token)."""
    clip = clip_module()

    return clip.tokenize(prompts, context_length=context_length, truncate=True)


@torch.no_grad()
def encode_prompts(clip_model, prompts: list[str], device: torch.device, batch_size: int = 256) -> torch.Tensor:
    """L2-normalised text features ``[n, embed_dim]`` of ``prompts`` from frozen CLIP."""
    from .surgery import TextTower

    tower = TextTower(clip_model)
    tokens = tokenize(prompts, clip_model.context_length).to(device)
    feats = []
    for i in range(0, len(tokens), batch_size):
        chunk = tokens[i:i + batch_size]
        # causal attention: the padding after the last end-of-text token changes nothing; drop it (exact)
        feats.append(tower(chunk[:, : int(chunk.argmax(dim=-1).max()) + 1]))
    feats = torch.cat(feats).float()
    return feats / feats.norm(dim=-1, keepdim=True)
