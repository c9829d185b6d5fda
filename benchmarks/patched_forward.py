"""Cost of the patched (explicit-loop, mask-taking) visual encoder against stock CLIP, same batch, one run.

    python -m benchmarks.patched_forward [--resolution 224] [--batch 8] [--rounds 5]

ViT-B/16 shapes, random weights. Prints stock / patched (no tokens) / patched with 5 tokens and role
masks in layers 9-12, and the ratios to stock (medians of alternating rounds).
"""
from __future__ import annotations

import argparse

import torch

from benchmarks.common import interleaved
from clipkit.surgery import VisionTower, run_injected
from clipkit.tiny import VIT_B16_SHAPE, build_clip
from head_roles import load_roles, role_mask


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = build_clip(image_resolution=args.resolution, **VIT_B16_SHAPE).to(device)
    tower = VisionTower(model)
    roles = load_roles("ViT-B/16")
    img = torch.randn(args.batch, 3, args.resolution, args.resolution, device=device)
    n = tower.num_tokens
    masks = [role_mask(roles.layer(layer), roles.core_attributes, n, device=device) for layer in roles.layers]
    tokens = [torch.randn(5, 768, device=device) for _ in roles.layers]

    def injected():
        x = tower.prefix(img, 8)
        return run_injected(tower.blocks[8:], x, tokens, n, 0.9, masks)

    with torch.no_grad():
        seconds = interleaved({"stock encode_image": lambda: model.encode_image(img),
                               "patched, no tokens": lambda: tower(img),
                               "patched, 5 tokens + role masks": injected}, device, args.rounds)
    base = seconds["stock encode_image"]
    print(f"device={device} batch={args.batch} resolution={args.resolution} (ViT-B/16 shapes, {n} tokens)")
    for name, sec in seconds.items():
        print(f"{name:34s} {sec * 1000:9.1f} ms   x{sec / base:.3f}")


if __name__ == "__main__":
    main()
