"""A procedural vision-language world in which DeAR can be run end to end on a CPU, offline.

Images are small renderings of one object with independent factors: shape, colour, texture, position
(the attributes DeAR's tokens stand for) and nuisances (background, size, noise). Classes are
(colour, texture, shape) triples named like real class names ("red striped circle"); captions name the
attributes in varied phrasings. Everything is a deterministic function of the seed.

    python -m tools.world --root DATA [--seed 0]          # writes DATA/synth_world in CoOp's layout

Pretraining images and captions cover every (colour, texture, shape, position) combination, as web data
would; the classification split (train/val/test) is rendered separately with other random draws.
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import random

import numpy as np
from PIL import Image

COLORS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (235, 210, 40),
          "purple": (140, 60, 190), "orange": (240, 130, 30)}
TEXTURES = ("plain", "striped", "dotted", "checkered")
SHAPES = ("circle", "square", "triangle", "cross", "diamond", "ring")
POSITIONS = {"top left": (0.3, 0.3), "top right": (0.3, 0.7), "bottom left": (0.7, 0.3),
             "bottom right": (0.7, 0.7), "center": (0.5, 0.5)}
BACKGROUNDS = {"dark": (35, 35, 45), "light": (205, 205, 195), "gray": (120, 120, 120)}
TEXTURE_WORDS = {"plain": ["plain", "solid", "uniform"], "striped": ["striped", "stripy", "banded"],
                 "dotted": ["dotted", "spotted", "polka dot"], "checkered": ["checkered", "checked", "chequered"]}
TEXTURE_NOUNS = {"plain": "no pattern", "striped": "stripes", "dotted": "dots", "checkered": "a checker pattern"}
POSITION_WORDS = {"top left": ["top left", "upper left"], "top right": ["top right", "upper right"],
                  "bottom left": ["bottom left", "lower left"], "bottom right": ["bottom right", "lower right"],
                  "center": ["center", "middle"]}
N_CLASSES = 24
RESOLUTION = 32


def world_classes(seed: int = 0, n: int = N_CLASSES) -> list[tuple[str, str, str]]:
    """``n`` distinct (colour, texture, shape) classes; every attribute value appears among the first half
    (base) and among the second half (new), so novel classes are new combinations of known words."""
    rng = random.Random(seed)
    combos = [(c, t, s) for c in COLORS for t in TEXTURES for s in SHAPES]
    while True:
        rng.shuffle(combos)
        chosen = combos[:n]
        halves = chosen[: (n + 1) // 2], chosen[(n + 1) // 2:]
        if all({x[i] for x in half} == set(vals) for half in halves
               for i, vals in enumerate((COLORS, TEXTURES, SHAPES))):
            return chosen


def class_name(c: str, t: str, s: str) -> str:
    return f"{c} {t} {s}"


def _shape_mask(shape: str, yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, r: float) -> np.ndarray:
    dy, dx = yy - cy, xx - cx
    if shape == "circle":
        return dy**2 + dx**2 <= r**2
    if shape == "ring":
        d2 = dy**2 + dx**2
        return (d2 <= r**2) & (d2 >= (0.55 * r) ** 2)
    if shape == "square":
        return (np.abs(dy) <= 0.85 * r) & (np.abs(dx) <= 0.85 * r)
    if shape == "diamond":
        return np.abs(dy) + np.abs(dx) <= 1.1 * r
    if shape == "cross":
        w = 0.38 * r
        return ((np.abs(dy) <= w) & (np.abs(dx) <= r)) | ((np.abs(dx) <= w) & (np.abs(dy) <= r))
    if shape == "triangle":  # apex up
        return (dy >= -r) & (dy <= 0.8 * r) & (np.abs(dx) <= (dy + r) * 0.6)
    raise ValueError(shape)


def _texture(texture: str, yy: np.ndarray, xx: np.ndarray, phase: int) -> np.ndarray:
    if texture == "plain":
        return np.ones_like(yy, dtype=np.float32)
    if texture == "striped":
        return (((yy.astype(int) + phase) // 2) % 2 == 0).astype(np.float32)
    if texture == "dotted":
        return (((yy.astype(int) + phase) % 3 == 0) & ((xx.astype(int) + phase) % 3 == 0)).astype(np.float32)
    if texture == "checkered":
        return ((((yy.astype(int) + phase) // 2) + (xx.astype(int) // 2)) % 2 == 0).astype(np.float32)
    raise ValueError(texture)


def render(color: str, texture: str, shape: str, position: str, rng: np.random.Generator,
           size: int = RESOLUTION) -> tuple[np.ndarray, str]:
    """An ``[size, size, 3]`` uint8 image and the name of its background."""
    bg_name = rng.choice(list(BACKGROUNDS))
    bg = np.array(BACKGROUNDS[bg_name], dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    py, px = POSITIONS[position]
    cy = py * size + rng.uniform(-1.5, 1.5)
    cx = px * size + rng.uniform(-1.5, 1.5)
    r = size * rng.uniform(0.2, 0.27)
    mask = _shape_mask(shape, yy, xx, cy, cx, r)
    pattern = _texture(texture, yy, xx, int(rng.integers(0, 4)))
    fg = np.array(COLORS[color], dtype=np.float32) * rng.uniform(0.85, 1.1)
    shade = 0.3 + 0.7 * pattern  # pattern pixels bright, gaps dark
    img = np.where(mask[..., None], fg * shade[..., None], bg)
    img = img + rng.normal(0, 8, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), bg_name


def caption(color: str, texture: str, shape: str, position: str, background: str, rng: random.Random) -> str:
    """One of many phrasings; some omit an attribute so that words are learned independently."""
    tw = rng.choice(TEXTURE_WORDS[texture])
    pw = rng.choice(POSITION_WORDS[position])
    patterns = [
        f"a {color} {tw} {shape}",
        f"a photo of a {color} {tw} {shape}",
        f"a {color} {shape} with {TEXTURE_NOUNS[texture]}",
        f"a {tw} {shape} in the {pw}",
        f"a {color} {shape} in the {pw}",
        f"a {color} {tw} {shape} in the {pw} on a {background} background",
        f"{color} {shape}, {tw}, {pw}",
        f"a {shape} that is {color} and {tw}",
        f"something {color} in the {pw}",
        f"a {tw} pattern in {color}",
        f"a {shape} on a {background} background",
    ]
    return rng.choice(patterns)


def pretraining_set(n: int, seed: int = 1, size: int = RESOLUTION) -> tuple[np.ndarray, list[str], list[str]]:
    """``n`` images ``[n, size, size, 3]``, their captions and colours, uniform over every combination."""
    rng = np.random.default_rng(seed)
    prng = random.Random(seed)
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    captions, colors = [], []
    for i in range(n):
        c, t, s = prng.choice(list(COLORS)), prng.choice(TEXTURES), prng.choice(SHAPES)
        p = prng.choice(list(POSITIONS))
        images[i], bg = render(c, t, s, p, rng, size)
        captions.append(caption(c, t, s, p, bg, prng))
        colors.append(c)
    return images, captions, colors


def write_dataset(root: str, seed: int = 0, per_split: tuple[int, int, int] = (40, 5, 20),
                  n_classes: int = N_CLASSES) -> str:
    """Render the classification data set into ``root/synth_world`` (CoOp layout); return its folder."""
    ddir = osp.join(root, "synth_world")
    split_path = osp.join(ddir, "split_zhou_SynthWorld.json")
    meta = {"seed": seed, "per_split": list(per_split), "n_classes": n_classes, "resolution": RESOLUTION}
    meta_path = osp.join(ddir, "world.json")
    if osp.exists(split_path) and osp.exists(meta_path):
        with open(meta_path) as f:
            if json.load(f) == meta:
                return ddir  # already generated with these settings
    rng = np.random.default_rng(seed + 1000)
    prng = random.Random(seed + 1000)
    split: dict[str, list] = {"train": [], "val": [], "test": []}
    for label, (c, t, s) in enumerate(world_classes(seed, n_classes)):
        name = class_name(c, t, s)
        folder = name.replace(" ", "_")
        for sname, n in zip(("train", "val", "test"), per_split):
            for i in range(n):
                img, _ = render(c, t, s, prng.choice(list(POSITIONS)), rng)
                rel = f"{folder}/{sname}_{i:03d}.png"
                os.makedirs(osp.join(ddir, "images", folder), exist_ok=True)
                Image.fromarray(img).save(osp.join(ddir, "images", rel))
                split[sname].append([rel, label, name])
    with open(split_path, "w") as f:
        json.dump(split, f)
    with open(meta_path, "w") as f:
        json.dump(meta, f)
    return ddir


def world_corpus() -> list[str]:
    """Descriptions of the world's concepts for the Concept Entropy analysis of a world-trained CLIP."""
    out = []
    for c in COLORS:
        out += [f"a {c} color", f"something {c}", f"{c} tones", f"a {c} object"]
    for t in TEXTURES:
        out += [f"a {w} pattern" for w in TEXTURE_WORDS[t]] + [f"a surface with {TEXTURE_NOUNS[t]}"]
    for s in SHAPES:
        out += [f"a {s}", f"a {s} shape", f"a small {s}", f"an outline of a {s}"]
    for p in POSITIONS:
        out += [f"in the {w}" for w in POSITION_WORDS[p]] + [f"something in the {p}"]
    for b in BACKGROUNDS:
        out += [f"on a {b} background", f"a {b} scene"]
    out += [f"a {c} {t} {s}" for c in COLORS for t in TEXTURES for s in SHAPES][::5]
    return list(dict.fromkeys(out))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="data")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--corpus-out", default="", help="also write the world's description corpus here")
    args = p.parse_args()
    print(f"wrote {write_dataset(args.root, args.seed)}")
    if args.corpus_out:
        os.makedirs(osp.dirname(osp.abspath(args.corpus_out)), exist_ok=True)
        with open(args.corpus_out, "w") as f:
            f.write("\n".join(world_corpus()) + "\n")


if __name__ == "__main__":
    main()
