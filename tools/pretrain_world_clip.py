"""Pretrain a tiny CLIP contrastively on the synthetic world's image-caption pairs (CPU, a few minutes).

    python -m tools.pretrain_world_clip --out output/world/tiny_world_clip.pt [--steps 1500] [--batch 256]

The model is OpenAI's ``clip.model.CLIP`` with small widths (ViT: 6 layers, width 192 = 3 heads, patch 8,
32 px; text: 4 layers, width 128, context 32). The file is a plain state dict that ``clipkit.load_clip``
reads like OpenAI's weights. Reuses an existing file with the same settings.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import os.path as osp
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

from clipkit.surgery import TextTower
from clipkit.text import tokenize
from clipkit.tiny import build_clip
from tools.world import COLORS, SHAPES, TEXTURES, pretraining_set

MEAN = torch.tensor((0.48145466, 0.4578275, 0.40821073)).view(1, 3, 1, 1)
STD = torch.tensor((0.26862954, 0.26130258, 0.27577711)).view(1, 3, 1, 1)
ARCH = dict(embed_dim=64, image_resolution=32, vision_layers=6, vision_width=192, vision_patch_size=8,
            context_length=32, transformer_width=128, transformer_layers=4)


def to_input(images_uint8) -> torch.Tensor:
    x = torch.from_numpy(images_uint8).permute(0, 3, 1, 2).float() / 255.0
    return (x - MEAN) / STD


@torch.no_grad()
def attribute_probe(model) -> dict[str, float]:
    """Zero-shot accuracy of each attribute on fresh world images (e.g. "a red object" vs other colours)."""
    import random

    import numpy as np

    from tools.world import render

    rng, prng = np.random.default_rng(123), random.Random(123)
    combos = [(prng.choice(list(COLORS)), prng.choice(TEXTURES), prng.choice(SHAPES)) for _ in range(300)]
    imgs = np.stack([render(c, t, s, "center", rng)[0] for c, t, s in combos])
    f = F.normalize(model.encode_image(to_input(imgs)), dim=-1)
    out = {}
    for i, (name, values, tmpl) in enumerate((("color", list(COLORS), "something {}"),
                                              ("texture", list(TEXTURES), "a {} pattern"),
                                              ("shape", list(SHAPES), "a {}"))):
        t = F.normalize(model.encode_text(tokenize([tmpl.format(v) for v in values], model.context_length)), dim=-1)
        pred = (f @ t.t()).argmax(-1)
        truth = torch.tensor([values.index(c[i]) for c in combos])
        out[name] = (pred == truth).float().mean().item() * 100
    return out


def pretrain(out: str, steps: int = 1500, batch: int = 256, n_images: int = 30000, lr: float = 1e-3,
             seed: int = 0) -> dict:
    settings = dict(ARCH, steps=steps, batch=batch, n_images=n_images, lr=lr, seed=seed)
    meta_path = out + ".json"
    if osp.exists(out) and osp.exists(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
        if meta.get("settings") == settings:
            print(f"Reusing {out}")
            return meta
    torch.manual_seed(seed)
    images, captions, colors = pretraining_set(n_images, seed=seed + 1)
    tokens = tokenize(captions, ARCH["context_length"])
    by_color = {c: torch.tensor([i for i, x in enumerate(colors) if x == c]) for c in COLORS}
    model = build_clip(seed=seed, **ARCH).train()
    text_tower = TextTower(model)  # encode_text with variable length (shares the weights)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    g = torch.Generator().manual_seed(seed)
    t0 = time.time()
    bar = tqdm(range(steps), desc="pretrain tiny CLIP", unit="step")
    for step in bar:
        if step % 3 == 2:  # hard negatives: one colour per batch, so shape, texture and position must be read
            pool = list(by_color.values())[int(torch.randint(0, len(by_color), (1,), generator=g))]
            idx = pool[torch.randint(0, len(pool), (batch,), generator=g)]
        else:
            idx = torch.randint(0, n_images, (batch,), generator=g)
        img = to_input(images[idx.numpy()])
        txt = tokens[idx]
        txt = txt[:, : int(txt.argmax(dim=-1).max()) + 1]  # drop padding after the last end-of-text (exact)
        fi = F.normalize(model.encode_image(img), dim=-1)
        ft = F.normalize(text_tower(txt), dim=-1)
        logits = model.logit_scale.exp().clamp(max=100) * fi @ ft.t()
        # symmetric InfoNCE
        labels = torch.arange(batch)
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    probe = attribute_probe(model)
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    torch.save(model.state_dict(), out + ".tmp")
    os.replace(out + ".tmp", out)
    meta = {"settings": settings, "final_loss": loss.item(), "seconds": round(time.time() - t0, 1),
            "attribute_zero_shot_accuracy": probe}
    with open(meta_path, "w") as f:
        json.dump(meta, f, indent=2)
    print(f"Saved {out}: loss {loss.item():.3f}, {meta['seconds']} s, attribute zero-shot {probe}")
    return meta


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="output/world/tiny_world_clip.pt")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--images", type=int, default=30000)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    pretrain(args.out, args.steps, args.batch, args.images, args.lr, args.seed)


if __name__ == "__main__":
    main()
