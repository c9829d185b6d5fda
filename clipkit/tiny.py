"""Tiny CLIP ViTs built with OpenAI's own ``clip.model.CLIP`` class, for tests, demos and benchmarks."""
from __future__ import annotations

import torch

from .loader import check_heads, clip_module, clip_state_dict, set_heads


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
    vision_heads: int | None = None,
    text_heads: int | None = None,
    seed: int = 0,
):
    """A randomly initialised CLIP (fp32). Heads default to ``width // 64`` (OpenAI's ``build_model`` rule);
    ``vision_heads`` / ``text_heads`` set other counts (they must divide the width; the initial weights do not
    depend on them). Save with :func:`save_clip` so that ``clipkit.load_clip`` rebuilds the same heads."""
    clip = clip_module()
    vision_heads = vision_heads or vision_width // 64
    text_heads = text_heads or transformer_width // 64
    check_heads(vision_width, vision_heads, "build_clip: vision_heads", min_width=64)
    check_heads(transformer_width, text_heads, "build_clip: text_heads")

    torch.manual_seed(seed)
    model = clip.model.CLIP(
        embed_dim, image_resolution, vision_layers, vision_width, vision_patch_size,
        context_length, 49408, transformer_width, text_heads, transformer_layers,
    )
    set_heads(model.visual.transformer, vision_heads, "build_clip: vision_heads")
    return model.float().eval()


VIT_B16_SHAPE = dict(embed_dim=512, vision_layers=12, vision_width=768, vision_patch_size=16,
                     transformer_width=512, transformer_layers=12)


def save_clip(model, path: str) -> str:
    """Save a plain state dict, with the head counts as reserved integer entries, that ``clipkit.load_clip``
    reads exactly as it reads OpenAI's files."""
    torch.save(clip_state_dict(model), path)
    return path
