"""Linear-probe CLIP on the base classes of a CoOp-layout data set: how far frozen image features go with K shots.

    python -m tools.linear_probe --clip output/world/tiny_world_clip.pt --data output/world/data/world_texture \\
        [--shots 16] [--seed 1] [--c 0.1 1 10 100]

The CoOp paper's linear-probe baseline, as a diagnostic of a CLIP: L2-normalised frozen image features
(``encode_image``, the image resized to the model's resolution, CLIP's normalisation, no augmentation), a
multinomial logistic regression (scikit-learn) fitted on ``--shots`` training images per base class (sampled
with ``--seed``), its inverse regularisation ``C`` chosen on the validation split, accuracy on the base classes'
test images. Base classes are the first ceil(n/2) labels (CoOp's rule). Numerics are pinned
(``clipkit.determinism``), so the figure is the same on every machine.

If the probe is below zero-shot CLIP on the same classes, the image features, not the prompts, limit
accuracy: no prompt learner can then climb far above zero-shot on base classes.
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import os.path as osp

import numpy as np


def read_split(folder: str) -> dict:
    files = sorted(glob.glob(osp.join(folder, "split_zhou_*.json")))
    if len(files) != 1:
        raise SystemExit(f"error: --data {folder}: expected one split_zhou_*.json (CoOp's layout), found "
                         f"{len(files)}; point --data at a data set folder such as output/world/data/world_texture")
    with open(files[0]) as f:
        return json.load(f)


def features(model, folder: str, items: list, batch: int = 256) -> np.ndarray:
    import torch
    import torch.nn.functional as F
    from PIL import Image

    size = model.visual.input_resolution
    from head_roles.discover import CLIP_MEAN, CLIP_STD

    mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    out = []
    for i in range(0, len(items), batch):
        imgs = []
        for rel, _, _ in items[i:i + batch]:
            img = Image.open(osp.join(folder, "images", rel)).convert("RGB")
            if img.size != (size, size):
                img = img.resize((size, size), Image.BICUBIC)
            imgs.append(torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1))
        x = (torch.stack(imgs).float() / 255 - mean) / std
        with torch.no_grad():
            out.append(F.normalize(model.encode_image(x).float(), dim=-1))
    return torch.cat(out).numpy()


def probe(clip_path: str, folder: str, shots: int = 16, seed: int = 1, cs: tuple[float, ...] = (0.1, 1, 10, 100),
          backbone: str = "ViT-B/16") -> dict:
    """Fit and score the probe; returns the chosen C, validation and base test accuracy (percent)."""
    from sklearn.linear_model import LogisticRegression

    from clipkit import load_clip

    split = read_split(folder)
    labels = sorted({label for _, label, _ in split["train"]})
    base = set(labels[: math.ceil(len(labels) / 2)])
    rng = np.random.default_rng(seed)
    train = []
    for label in sorted(base):
        pool = [it for it in split["train"] if it[1] == label]
        train += [pool[i] for i in sorted(rng.choice(len(pool), min(shots, len(pool)), replace=False))]
    val = [it for it in split["val"] if it[1] in base]
    test = [it for it in split["test"] if it[1] in base]
    model = load_clip(backbone, clip_path).eval()
    xtr, xval, xte = (features(model, folder, items) for items in (train, val, test))
    ytr, yval, yte = (np.array([it[1] for it in items]) for items in (train, val, test))
    best = None
    for c in cs:
        clf = LogisticRegression(C=c, max_iter=10000).fit(xtr, ytr)
        acc = clf.score(xval, yval) if len(val) else clf.score(xtr, ytr)
        if best is None or acc > best[0]:
            best = (acc, c, clf)
    acc_val, c, clf = best
    return {"classes": len(base), "shots": shots, "seed": seed, "C": c, "val": round(100 * acc_val, 2),
            "test": round(100 * clf.score(xte, yte), 2), "train_images": len(train), "test_images": len(test)}


def main(argv: list[str] | None = None) -> None:
    from clipkit.determinism import pin_numerics

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clip", required=True, help="CLIP weights (a plain state dict or OpenAI's archive)")
    p.add_argument("--data", required=True, nargs="+", help="data set folders in CoOp's layout")
    p.add_argument("--backbone", default="ViT-B/16")
    p.add_argument("--shots", type=int, default=16)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--c", type=float, nargs="+", default=[0.1, 1, 10, 100], help="values of C to choose from")
    args = p.parse_args(argv)
    for folder in args.data:  # refuse a wrong folder before anything is computed
        read_split(folder)
    pin_numerics()
    for folder in args.data:
        r = probe(args.clip, folder, args.shots, args.seed, tuple(args.c), args.backbone)
        print(f"{osp.basename(folder.rstrip('/'))}: linear probe, {r['shots']} shots x {r['classes']} base classes, "
              f"C {r['C']:g}: base test accuracy {r['test']:.2f}% (validation {r['val']:.2f}%)")


if __name__ == "__main__":
    main()
