"""Tiny CLIP ViTs built with OpenAI's own ``clip.model.CLIP`` class, for tests, demos and benchmarks."""
from __future__ import annotations

import torch

from .loader import clip_module


def build_clip(
    *,
    embed_dim: int = 64,
    image_resolution: int = 32,
    vision_layers: int = 6,
    vision_width: int = 256,
    vision_patch_size: int = 8,
    context_length: int = 77,
    transformer_width: int = 128,
    transformer_layers: int = 4,
    seed: int = 0,
):
    """A randomly initialised CLIP (fp32). Heads are ``width // 64`` as in OpenAI's ``build_model``."""
    clip = clip_module()

    torch.manual_seed(seed)
    model = clip.model.CLIP(
        embed_dim, image_resolution, vision_layers, vision_width, vision_patch_size,
        context_length, 49408, transformer_width, transformer_width // 64, transformer_layers,
    )
    return model.float().eval()


VIT_B16_SHAPE = dict(embed_dim=512, vision_layers=12, vision_width=768, vision_patch_size=16,
                     transformer_width=512, transformer_layers=12)


def save_clip(model, path: str) -> str:
    """Save a state dict that ``clipkit.load_clip`` reads exactly as it reads OpenAI's files."""
    torch.save(model.state_dict(), path)
    return path
