"""A procedural vision-language world in which prompt learners can be run end to end on a CPU, offline.

Every image is a 32x32 rendering of one object with four independent attributes, the ones DeAR's tokens
stand for: **colour** (10), **texture** (8), **shape** (10; the world's "object") and **position** (a 3x3 grid;
the world's "location"), plus nuisances (background, size, jitter, brightness, pixel noise). Five data sets
hinge on different attributes, as the paper's 11 data sets do:

| data set | classes | defined by | like |
|---|---|---|---|
| ``world_color`` | 10 | colour (the rest varies) | Flowers102 (colour matters) |
| ``world_texture`` | 8 | texture | DTD |
| ``world_shape`` | 10 | shape | FGVCAircraft / StanfordCars (shape matters) |
| ``world_position`` | 9 | position | EuroSAT-like layout cues |
| ``world_mixed`` | 24 | (colour, texture, shape) | ImageNet: many cues together |

Each is written in CoOp's layout (``<folder>/images`` + ``split_zhou_<Name>.json``) and read by the registered
Dassl data set of ``datasets/world.py``. Base classes are the first half of the labels and new ones the
second (CoOp's rule); the class order is drawn from the seed so that novel classes are new values of the
defining attribute (colour, texture, shape) or new combinations of known words (position: every row and
column word occurs on both sides); mixed: new colours, with every texture and shape on both sides. Attributes
that do not define a class are drawn uniformly for every image, so they are on both sides everywhere.

Pretraining pairs (``pretraining_set``) cover every (colour, texture, shape, position) combination, as web
data would, with captions that name each attribute with probability ``MENTION`` in varied phrasings, and name
it wrongly with probability ``CAPTION_NOISE`` (web captions are noisy): the knobs that, with the pretraining
schedule, set how well zero-shot CLIP does. Everything is a deterministic function of the seed (no Python
``hash()``, no set iteration, numpy and ``random`` generators seeded per data set).

    python -m tools.world --root DATA [--seed 0] [--corpus-out FILE] [--seeds-out FILE]   # every data set (cached)
"""
from __future__ import annotations

import argparse
import colorsys
import dataclasses
import json
import math
import os
import os.path as osp
import random
import shutil
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

RESOLUTION = 32

# ---------------------------------------------------------------------------------------------- attributes
COLORS = {"red": (215, 35, 35), "orange": (240, 130, 25), "yellow": (235, 215, 40), "lime": (150, 220, 40),
          "green": (30, 140, 50), "teal": (20, 150, 150), "blue": (40, 80, 225), "purple": (135, 55, 190),
          "pink": (245, 125, 185), "brown": (125, 75, 35)}
TEXTURES = ("plain", "striped", "zigzag", "dotted", "checkered", "grid", "speckled", "hatched")
SHAPES = ("circle", "square", "triangle", "cross", "diamond", "ring", "star", "crescent", "bar", "arrow")
_ROWS = {"top": 0.22, "center": 0.5, "bottom": 0.78}
_COLS = {"left": 0.22, "center": 0.5, "right": 0.78}
POSITIONS = {("center" if r == c == "center" else f"{r} {c}"): (y, x)
             for r, y in _ROWS.items() for c, x in _COLS.items()}
ATTRIBUTES = ("color", "texture", "shape", "position")
VALUES = {"color": tuple(COLORS), "texture": TEXTURES, "shape": SHAPES, "position": tuple(POSITIONS)}
BACKGROUNDS = {"dark": (35, 35, 45), "light": (205, 205, 195), "gray": (120, 120, 120)}

# words for captions (synonyms are what a web corpus would use; the canonical name is the class name)
TEXTURE_WORDS = {"plain": ["plain", "solid", "uniform"], "striped": ["striped", "stripy", "banded"],
                 "zigzag": ["zigzag", "zigzagged", "chevron"], "dotted": ["dotted", "spotted", "polka dot"],
                 "checkered": ["checkered", "checked", "chequered"], "grid": ["grid", "gridded", "latticed"],
                 "speckled": ["speckled", "flecked", "grainy"], "hatched": ["hatched", "diagonal striped", "slanted"]}
TEXTURE_NOUNS = {"plain": "no pattern", "striped": "stripes", "zigzag": "zigzags", "dotted": "dots",
                 "checkered": "checks", "grid": "grid lines", "speckled": "speckles", "hatched": "diagonal lines"}
_ROW_WORDS = {"top": ["top", "upper"], "center": ["center", "middle"], "bottom": ["bottom", "lower"]}
_COL_WORDS = {"left": ["left"], "center": ["center", "middle"], "right": ["right"]}
GENERIC_NOUNS = ("object", "shape", "thing")

# ---------------------------------------------------------------------------------------------- knobs
CAPTION_NOISE = 0.1  # probability that a caption names an attribute with a wrong value
MENTION = 0.3  # probability that a caption names an attribute besides the one it is about
VARIETY = 0.25  # probability that a caption words something otherwise than the prompts do (synonyms, order)
GENERATOR_VERSION = 4  # bump when rendering, class drawing or the files written change: cached sets are regenerated
ATTRIBUTES_FILE = "attributes.json"  # per data set: every image's four attribute values (rel path -> values)


@dataclass(frozen=True)
class Nuisance:
    """What varies in every image besides the four attributes (the world's own difficulty knobs)."""

    noise_std: float = 8.0  # Gaussian pixel noise (0-255 scale)
    radius: tuple[float, float] = (0.19, 0.26)  # object radius as a fraction of the image side
    jitter: float = 1.5  # pixels around the grid position
    brightness: tuple[float, float] = (0.85, 1.1)  # multiplies the object's colour
    texture_contrast: float = 0.7  # how much darker a texture's marks are than the object's colour


NUISANCE = Nuisance()


@dataclass(frozen=True)
class Domain:
    """How the data sets' images differ from the pretraining images, as a benchmark's photographs differ from
    CLIP's web data: the same world seen through another camera. Pretraining images never get it."""

    hue: float = 0.0  # degrees by which every object colour is rotated around the hue circle
    shape_rotation: float = 0.0  # degrees by which every object's outline is turned about its centre (180: upside
    #                              down; the shapes are mirror-symmetric, so the direction does not matter then)
    light_marks: bool = False  # a texture's marks lighter than the object's colour (towards white), not darker
    texture_rotation: float = 0.0  # degrees by which every texture's pattern is turned about the object's centre
    #                                (45: horizontal stripes become diagonal bands, diagonal bands upright ones)
    shape_blend: float = 0.0  # weight of the next shape's outline (SHAPES order, cyclic) blended into the
    #                           object's own: between two shapes, as hue 35 puts every colour near its neighbour
    texture_blend: float = 0.0  # weight of the next texture's marks (TEXTURES order, cyclic) blended into its own
    position_rotation: float = 0.0  # degrees by which every grid position is turned clockwise about the image's
    #                                 centre (the eight outer cells lie 45 degrees apart; the centre stays)

    @classmethod
    def parse(cls, text: str, base: Domain | None = None) -> Domain:
        """``"hue=35,shape_rotation=180,light_marks=1"`` -> ``base`` (default: no shift) with those fields set."""
        fields = {f.name: f.type for f in dataclasses.fields(cls)}
        kw: dict = {}
        for item in filter(None, (t.strip() for t in text.split(","))):
            key, eq, value = item.partition("=")
            key = key.strip()
            if not eq or key not in fields:
                raise ValueError(f"domain {text!r}: {item!r} is not KEY=VALUE with KEY one of {', '.join(fields)} "
                                 f"(e.g. hue=35,shape_rotation=180,light_marks=1)")
            flag = fields[key] in (bool, "bool")
            try:
                kw[key] = _parse_bool(value) if flag else float(value)
                if not math.isfinite(kw[key]):
                    raise ValueError(value)
            except ValueError:
                raise ValueError(f"domain {text!r}: {key} wants {'0 or 1' if flag else 'a number'}, got "
                                 f"{value.strip()!r}") from None
        return dataclasses.replace(base or cls(), **kw)

    def __post_init__(self):
        for name in ("shape_blend", "texture_blend"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"domain: {name} is a weight between 0 (the object's own) and 1 (the next one's), "
                                 f"got {getattr(self, name)}")

    def changes(self) -> dict:
        """The fields that differ from no shift (what a data set records: a switch added later, off, leaves
        the records of data sets made before it valid)."""
        none = Domain()
        return {k: v for k, v in self.__dict__.items() if v != getattr(none, k)}


def _parse_bool(value: str) -> bool:
    v = value.strip().lower()
    if v not in ("0", "1", "true", "false"):
        raise ValueError(value)
    return v in ("1", "true")


# Calibrated on zero-shot CLIP and CoOp only (README, "Calibration"), with the shipped CLIP: every colour, shape
# and texture drawn part of the way towards its neighbour's, so that the zero-shot text head no longer fits the
# data sets' images as well as a classifier trained on them can, as on the real benchmark. A data set may add
# its own changes on top (WorldDataset.domain), as each real data set has its own camera.
DOMAIN = Domain(hue=35.0, shape_blend=0.4, texture_blend=0.5)


def object_rgb(color: str, hue: float = 0.0) -> tuple[float, float, float]:
    """The rendered RGB of ``color`` (0-255) with its hue rotated by ``hue`` degrees (lightness and saturation
    kept)."""
    if hue == 0:
        return tuple(float(v) for v in COLORS[color])  # exactly the palette (pretraining images stay as they were)
    h, lightness, s = colorsys.rgb_to_hls(*(v / 255 for v in COLORS[color]))
    return tuple(255 * v for v in colorsys.hls_to_rgb((h + hue / 360) % 1.0, lightness, s))


# ---------------------------------------------------------------------------------------------- rendering
def _shape_mask(shape: str, dy: np.ndarray, dx: np.ndarray, r: float) -> np.ndarray:
    """Pixels of ``shape`` centred at 0 with radius ``r``; ``dy``/``dx`` are pixel offsets from the centre.
    Every shape is its own mirror image left to right, so a horizontal flip (the paper's augmentation) keeps
    it; only positions left and right swap under a flip."""
    d2 = dy**2 + dx**2
    if shape == "circle":
        return d2 <= r**2
    if shape == "ring":
        return (d2 <= r**2) & (d2 >= (0.55 * r) ** 2)
    if shape == "square":
        return (np.abs(dy) <= 0.85 * r) & (np.abs(dx) <= 0.85 * r)
    if shape == "diamond":
        return np.abs(dy) + np.abs(dx) <= 1.15 * r
    if shape == "cross":
        w = 0.36 * r
        return ((np.abs(dy) <= w) & (np.abs(dx) <= r)) | ((np.abs(dx) <= w) & (np.abs(dy) <= r))
    if shape == "triangle":  # apex up
        return (dy >= -r) & (dy <= 0.8 * r) & (np.abs(dx) <= (dy + r) * 0.6)
    if shape == "star":  # five points, one up
        theta = np.arctan2(dx, -dy)
        return np.sqrt(d2) <= r * (0.42 + 0.58 * np.abs(np.cos(2.5 * theta)) ** 3)
    if shape == "crescent":  # opening upwards
        return (d2 <= r**2) & ((dy + 0.45 * r) ** 2 + dx**2 > (0.8 * r) ** 2)
    if shape == "bar":  # horizontal
        return (np.abs(dy) <= 0.38 * r) & (np.abs(dx) <= 1.1 * r)
    if shape == "arrow":  # pointing up
        shaft = (np.abs(dx) <= 0.28 * r) & (dy <= r) & (dy >= -0.1 * r)
        head = (dy <= 0.05 * r) & (dy >= -r) & (np.abs(dx) <= 0.95 * (r + dy))
        return shaft | head
    raise ValueError(f"unknown shape {shape!r}; known: {SHAPES}")


def _next(values: tuple[str, ...], value: str) -> str:
    return values[(values.index(value) + 1) % len(values)]


def _turn(dy: np.ndarray, dx: np.ndarray, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """Offsets ``(dy, dx)`` from a centre, read in a frame turned by ``degrees``: a shape drawn on the turned
    offsets appears turned by ``degrees`` about that centre (90: a horizontal bar stands upright; 180: upside
    down). ``0`` returns them unchanged, so an unturned image is the same bytes."""
    if not degrees:
        return dy, dx
    a = np.deg2rad(degrees)
    return np.cos(a) * dy - np.sin(a) * dx, np.sin(a) * dy + np.cos(a) * dx


def _texture(texture: str, yy: np.ndarray, xx: np.ndarray, phase: int, rng: np.random.Generator) -> np.ndarray:
    """A 0/1 pattern over the image (0 = a dark mark on the object). Every pattern leaves at least half of the
    object bright, so that its colour stays visible."""
    y, x = yy.astype(int) + phase, xx.astype(int) + phase
    if texture == "plain":
        return np.ones_like(yy)
    if texture == "striped":  # horizontal bands, period 4
        return ((y // 2) % 2 == 0).astype(np.float32)
    if texture == "zigzag":  # horizontal bands bent into a zigzag
        return (((y + np.abs(x % 6 - 3)) // 2) % 2 == 0).astype(np.float32)
    if texture == "dotted":  # dark dots on a 3-pixel lattice
        return ~((y % 3 == 0) & (x % 3 == 0)) * np.float32(1)
    if texture == "checkered":
        return (((y // 2) + (x // 2)) % 2 == 0).astype(np.float32)
    if texture == "grid":  # dark lines every 4 pixels
        return ~((y % 4 == 0) | (x % 4 == 0)) * np.float32(1)
    if texture == "speckled":
        return (rng.random(yy.shape) >= 0.35).astype(np.float32)
    if texture == "hatched":  # diagonal bands
        return (((y + x) // 2) % 2 == 0).astype(np.float32)
    raise ValueError(f"unknown texture {texture!r}; known: {TEXTURES}")


def render(color: str, texture: str, shape: str, position: str, rng: np.random.Generator,
           size: int = RESOLUTION, nuisance: Nuisance = NUISANCE, domain: Domain = Domain()
           ) -> tuple[np.ndarray, str]:
    """An ``[size, size, 3]`` uint8 image of one object, and the name of its background. ``domain`` defaults to
    none (pretraining's images); the data sets pass their calibrated one (``WorldDataset.calibrated_domain``)."""
    bg_name = list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))]
    bg = np.array(BACKGROUNDS[bg_name], dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    py, px = POSITIONS[position]
    if domain.position_rotation:  # clockwise as seen (y points down): the top cell moves towards the right
        a = math.radians(domain.position_rotation)
        py, px = (0.5 + math.sin(a) * (px - 0.5) + math.cos(a) * (py - 0.5),
                  0.5 + math.cos(a) * (px - 0.5) - math.sin(a) * (py - 0.5))
    cy = py * size + rng.uniform(-nuisance.jitter, nuisance.jitter)
    cx = px * size + rng.uniform(-nuisance.jitter, nuisance.jitter)
    r = size * rng.uniform(*nuisance.radius)
    oy, ox = yy - cy, xx - cx  # offsets from the object's centre
    dy, dx = _turn(oy, ox, domain.shape_rotation)
    # the object's opacity: 0/1, or with a blend 1 where both outlines are, 1 - w or w where only one is
    alpha = _shape_mask(shape, dy, dx, r)
    if domain.shape_blend:
        w = domain.shape_blend
        alpha = (1 - w) * alpha + w * _shape_mask(_next(SHAPES, shape), dy, dx, r)
    alpha = alpha.astype(np.float32)
    ty, tx = yy, xx
    if domain.texture_rotation:  # the pattern read in a turned frame (whole pixels, as the unturned one)
        ty, tx = _turn(oy, ox, domain.texture_rotation)
        ty, tx = np.floor(ty + cy), np.floor(tx + cx)
    phase = int(rng.integers(0, 4))
    pattern = _texture(texture, ty, tx, phase, rng)
    if domain.texture_blend:  # both patterns' marks, each at its weight of the contrast
        w = domain.texture_blend
        pattern = (1 - w) * pattern + w * _texture(_next(TEXTURES, texture), ty, tx, phase, rng)
    fg = np.array(object_rgb(color, domain.hue), dtype=np.float32) * rng.uniform(*nuisance.brightness)
    marks = nuisance.texture_contrast * (1.0 - pattern)[..., None]  # 0 off the marks
    if domain.light_marks:  # marks lighter than the object's colour: blended towards white
        obj = fg + marks * (255.0 - fg)
    else:  # marks darker than the object's colour
        obj = fg * (1.0 - marks)
    img = alpha[..., None] * obj + (1 - alpha[..., None]) * bg  # at opacity 0/1 exactly bg/obj
    img = img + rng.normal(0, nuisance.noise_std, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), bg_name


# ---------------------------------------------------------------------------------------------- captions
def position_words(position: str, rng: random.Random) -> str:
    """``"top left"`` -> e.g. ``"upper left"``; ``"center"`` -> ``"center"`` or ``"middle"``."""
    if position == "center":
        return rng.choice(_ROW_WORDS["center"])
    row, col = position.split()
    return f"{rng.choice(_ROW_WORDS[row])} {rng.choice(_COL_WORDS[col])}"


def caption(color: str, texture: str, shape: str, position: str, background: str, rng: random.Random,
            noise: float = CAPTION_NOISE, mention: float = MENTION, variety: float = VARIETY,
            focus: str | None = None) -> str:
    """One short web-like caption about ``focus`` (an attribute; default: one drawn at random).

    It also names each other attribute with probability ``mention`` and names each attribute wrongly with
    probability ``noise``. Its plain form is the one the data sets' prompts use ("a photo of a red object",
    "striped texture", "a photo of a circle", "a photo of an object in the top left", "a photo of a red
    striped circle in the top left"); with probability ``variety`` each choice of words goes another way
    (synonyms, "with stripes", "at the upper left", "an image of", "a shape", a background)."""
    truth = {"color": color, "texture": texture, "shape": shape, "position": position}
    focus = focus or rng.choice(ATTRIBUTES)
    said = {}
    for a in ATTRIBUTES:
        if a == focus or rng.random() < mention:
            said[a] = truth[a] if rng.random() >= noise else rng.choice([v for v in VALUES[a] if v != truth[a]])
    c, t, s, p = (said.get(a) for a in ATTRIBUTES)

    def vary() -> bool:
        return rng.random() < variety

    tw = (rng.choice(TEXTURE_WORDS[t]) if vary() else t) if t else None
    if t and not (c or s or p):
        return f"{tw} texture" if not vary() else rng.choice([f"a {tw} pattern", f"an object with {TEXTURE_NOUNS[t]}"])
    noun = s or (rng.choice(GENERIC_NOUNS) if vary() else "object")
    adjs = [w for w in (c, tw) if w]
    if len(adjs) == 2 and vary():
        adjs.reverse()
    words = ["an" if not adjs and noun == "object" else "a", *adjs, noun]
    if t and vary():  # "a red circle with stripes"
        words = [w for w in words if w != tw] + ["with", TEXTURE_NOUNS[t]]
    text = ("an image of " if vary() else "a photo of ") + " ".join(words)
    if p:
        text += f" {'at' if vary() else 'in'} the {position_words(p, rng) if vary() else p}"
    if vary():
        text += f" on a {background} background"
    return text


# ---------------------------------------------------------------------------------------------- pretraining
def pretraining_set(n: int, seed: int = 1, size: int = RESOLUTION, noise: float = CAPTION_NOISE,
                    mention: float = MENTION, variety: float = VARIETY
                    ) -> tuple[np.ndarray, list[list[str]], np.ndarray]:
    """``n`` images ``[n, size, size, 3]``, their captions and their attribute indices ``[n, 4]`` (into
    ``VALUES[a]`` for ``a`` in ``ATTRIBUTES``), uniform over every combination. Each image has one caption per
    attribute, focused on it (``captions[i][k]`` names ``ATTRIBUTES[k]``), as COCO gives each image several
    captions that dwell on different things."""
    rng = np.random.default_rng(seed)
    prng = random.Random(seed)
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    attrs = np.empty((n, len(ATTRIBUTES)), dtype=np.int64)
    captions = []
    for i in range(n):
        idx = [prng.randrange(len(VALUES[a])) for a in ATTRIBUTES]
        c, t, s, p = (VALUES[a][j] for a, j in zip(ATTRIBUTES, idx))
        images[i], bg = render(c, t, s, p, rng, size)
        captions.append([caption(c, t, s, p, bg, prng, noise, mention, variety, focus=a) for a in ATTRIBUTES])
        attrs[i] = idx
    return images, captions, attrs


# ---------------------------------------------------------------------------------------------- data sets
@dataclass(frozen=True)
class WorldDataset:
    """One classification data set of the world: which attributes define a class, and how prompts read."""

    folder: str  # also the config name: configs/datasets/<folder>.yaml
    dassl_name: str  # the registered Dassl data set (datasets/world.py)
    defining: tuple[str, ...]  # attributes whose values make the class name, in name order
    template: str  # DATASET.PROMPT_TEMPLATE of its config
    n_classes: int = 0  # 0: every value of the (single) defining attribute
    subset: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (attribute, values) to draw classes from; default all
    domain: tuple[tuple[str, float], ...] = ()  # (Domain field, value) on top of DOMAIN: this data set's own camera
    novel: str = ""  # several defining attributes: the one whose values the halves split (new classes bring values
    #                  of it that no base class shows, as a real data set's new classes bring new nouns)

    def __post_init__(self):
        if self.novel and (len(self.defining) < 2 or self.novel not in self.defining):
            raise ValueError(f"{self.folder}: novel={self.novel!r} must be one of its defining attributes "
                             f"{self.defining}, and only a data set with several has one (a single attribute's "
                             f"values are split between the halves already)")

    def values(self, attribute: str) -> tuple[str, ...]:
        return dict(self.subset).get(attribute, VALUES[attribute])

    def calibrated_domain(self, change: str = "") -> Domain:
        """What its images are seen through: ``DOMAIN``, then its own ``domain``, then ``change`` (``Domain.parse``
        text, for calibration studies: it applies to every data set alike)."""
        return Domain.parse(change, base=dataclasses.replace(DOMAIN, **dict(self.domain)))

    @property
    def split_file(self) -> str:
        return f"split_zhou_{self.dassl_name}.json"


DATASETS = {d.folder: d for d in (
    WorldDataset("world_color", "WorldColor", ("color",), "a photo of a {} object."),
    WorldDataset("world_texture", "WorldTexture", ("texture",), "{} texture."),
    WorldDataset("world_shape", "WorldShape", ("shape",), "a photo of a {}."),
    # its grid turned by 45 degrees (README, "Calibration"): unturned, every method solves it from the CLIP's own
    # words; the other data sets keep the grid, as turning cuts objects at the image's edge (shape breaks)
    WorldDataset("world_position", "WorldPosition", ("position",), "a photo of an object in the {}.",
                 domain=(("position_rotation", 45.0),)),
    # the first world's values; new classes bring colours no base class shows (README, "Calibration": with every
    # value on both sides, CoOp gained on new classes too), every texture and shape is on both sides, and no
    # single attribute names a class
    WorldDataset("world_mixed", "WorldMixed", ("color", "texture", "shape"), "a photo of a {}.", n_classes=24,
                 novel="color",
                 subset=(("color", ("red", "yellow", "green", "blue", "purple")),
                         ("texture", ("plain", "striped", "dotted", "checkered")),
                         ("shape", ("circle", "square", "triangle", "cross", "diamond", "ring")))),
)}
PER_SPLIT = (40, 10, 40)  # train / val / test images per class (16-shot runs sample from train)


def _stream(seed: int, name: str) -> int:
    """A per-data-set seed that does not depend on Python's randomised ``hash()``."""
    return seed * 1_000_003 + zlib.crc32(name.encode())


def _row_col(position: str) -> tuple[str, str]:
    return ("center", "center") if position == "center" else tuple(position.split())


def _halves(classes: list, n: int) -> tuple[list, list]:
    return classes[: (n + 1) // 2], classes[(n + 1) // 2:]


def dataset_classes(name: str, seed: int = 0) -> list[tuple[str, ...]]:
    """The classes of data set ``name`` in label order, each a tuple of values of its defining attributes.

    Base = first half (rounded up), new = second half. Single-attribute sets: every value, in a seeded order
    (position: until every row and column word is on both sides). Mixed: ``n_classes`` distinct triples, the
    values of its ``novel`` attribute split between the halves, every other value of its subset on both sides,
    each value about equally often within a half."""
    spec = DATASETS[name]
    rng = random.Random(_stream(seed, name))
    if len(spec.defining) == 1:
        values = [(v,) for v in VALUES[spec.defining[0]]]
        while True:
            rng.shuffle(values)
            if spec.defining[0] != "position":
                return list(values)
            halves = _halves(values, len(values))
            if all({_row_col(p)[i] for (p,) in half} == set(words) for half in halves
                   for i, words in enumerate((_ROWS, _COLS))):
                return list(values)
    n = spec.n_classes
    while True:  # each half: every value equally often (up to one), shuffled per attribute, zipped into triples
        classes: list[tuple[str, ...]] = []
        novel = list(spec.values(spec.novel)) if spec.novel else []
        rng.shuffle(novel)
        for half, half_n in enumerate(len(h) for h in _halves(list(range(n)), n)):
            columns = []
            for a in spec.defining:
                vals = _halves(novel, len(novel))[half] if a == spec.novel else list(spec.values(a))
                if half_n < len(vals):
                    raise ValueError(f"{name}: {half_n} classes per half cannot hold every {a}")
                rng.shuffle(vals)
                col = (vals * (half_n // len(vals) + 1))[:half_n]  # each value floor or ceil(half_n / k) times
                rng.shuffle(col)
                columns.append(col)
            classes += list(zip(*columns))
        if len(set(classes)) == n:
            return classes


def class_name(values: tuple[str, ...]) -> str:
    return " ".join(values)


def write_dataset(root: str, name: str, seed: int = 0, per_split: tuple[int, int, int] = PER_SPLIT,
                  domain: Domain | None = None) -> str:
    """Render data set ``name`` into ``root/<folder>`` (CoOp layout) unless it is there with these settings;
    ``domain`` defaults to the data set's calibrated one (``WorldDataset.calibrated_domain``)."""
    spec = DATASETS[name]
    domain = spec.calibrated_domain() if domain is None else domain
    ddir = osp.join(root, spec.folder)
    split_path = osp.join(ddir, spec.split_file)
    meta = {"dataset": name, "seed": seed, "per_split": list(per_split), "resolution": RESOLUTION,
            "classes": [class_name(c) for c in dataset_classes(name, seed)], "nuisance": NUISANCE.__dict__,
            "domain": domain.changes(), "generator": GENERATOR_VERSION}
    meta_path = osp.join(ddir, "world.json")
    if osp.exists(split_path) and osp.exists(meta_path):
        with open(meta_path) as f:
            if json.load(f) == json.loads(json.dumps(meta)):
                return ddir  # already generated with these settings
    if osp.isdir(ddir):
        shutil.rmtree(ddir)  # other settings: images, split and few-shot caches all go
    stream = _stream(seed, name) + 1
    rng, prng = np.random.default_rng(stream), random.Random(stream)
    split: dict[str, list] = {"train": [], "val": [], "test": []}
    image_attrs: dict[str, dict[str, str]] = {}
    for label, values in enumerate(dataset_classes(name, seed)):
        cname = class_name(values)
        folder = cname.replace(" ", "_")
        os.makedirs(osp.join(ddir, "images", folder), exist_ok=True)
        for sname, n in zip(("train", "val", "test"), per_split):
            for i in range(n):
                attrs = {a: prng.choice(VALUES[a]) for a in ATTRIBUTES}  # nuisance attributes: uniform
                attrs.update(zip(spec.defining, values))
                img, _ = render(attrs["color"], attrs["texture"], attrs["shape"], attrs["position"], rng,
                                domain=domain)
                rel = f"{folder}/{sname}_{i:03d}.png"
                Image.fromarray(img).save(osp.join(ddir, "images", rel))
                split[sname].append([rel, label, cname])
                image_attrs[rel] = attrs
    with open(split_path, "w") as f:
        json.dump(split, f)
    with open(osp.join(ddir, ATTRIBUTES_FILE), "w") as f:  # ground truth for retrieval figures and probes
        json.dump(image_attrs, f, sort_keys=True)
    with open(meta_path, "w") as f:
        json.dump(meta, f)
    return ddir


def write_all(root: str, seed: int = 0, per_split: tuple[int, int, int] = PER_SPLIT) -> list[str]:
    """Every world data set under ``root`` (each cached by its settings)."""
    return [write_dataset(root, name, seed, per_split) for name in DATASETS]


def world_corpus_concepts() -> dict[str, str]:
    """The world's description corpus for the Concept Entropy analysis of a world-trained CLIP, every text with the
    concept it describes by construction: ``color``, ``texture``, ``shape``, ``location`` (the object's place in
    the frame: the world's position attribute) or ``background`` (a nuisance, no concept of the paper's).

    One concept per text, as TEXTSPAN's descriptions mostly are: a text naming three attributes at once ("a red
    striped circle") has no one concept, and the analysis would name it after whichever seed its SBERT embedding
    lies nearest, so that a head picking such texts looked specialized in that concept (README, design
    decisions). The truth lets a test measure how well SBERT + HDBSCAN name the texts (``tests/test_world.py``)."""
    out: dict[str, str] = {}
    for c in COLORS:
        out.update(dict.fromkeys([f"a {c} color", f"something {c}", f"{c} tones", f"a {c} object"], "color"))
    for t in TEXTURES:
        texts = [f"a {w} pattern" for w in TEXTURE_WORDS[t]] + [f"a surface with {TEXTURE_NOUNS[t]}", f"{t} texture"]
        out.update(dict.fromkeys(texts, "texture"))
    for s in SHAPES:
        out.update(dict.fromkeys([f"a {s}", f"a {s} shape", f"a small {s}", f"an outline of a {s}"], "shape"))
    for p in POSITIONS:
        row, col = _row_col(p)
        words = (_ROW_WORDS["center"] if p == "center"
                 else [f"{r} {c}" for r in _ROW_WORDS[row] for c in _COL_WORDS[col]])
        out.update(dict.fromkeys([f"in the {w}" for w in words] + [f"something in the {p}"], "location"))
    for b in BACKGROUNDS:
        out.update(dict.fromkeys([f"on a {b} background", f"a {b} scene"], "background"))
    return out


def world_corpus() -> list[str]:
    """The texts of :func:`world_corpus_concepts`, in its order (``--corpus-out``)."""
    return list(world_corpus_concepts())


# The phrases that name the analysis' clusters (head_roles.discover, ``seeds``): the paper's 12 concepts, with two
# worded as the world means them. Its textures are printed patterns, not materials (the paper's seeds say "furry",
# "woven", "marbled"), and its locations are places in the frame, not places on earth ("photo taken in a city").
# None of these is a text of the corpus (three of the paper's seeds kept are: "a red color", "a circle", "a triangle").
WORLD_SEEDS = {
    "texture": ["a repeating printed pattern", "a patterned surface", "a surface texture",
                "lines or dots on a surface"],
    "location": ["at the top left of the picture", "near the bottom edge", "in the middle of the image",
                 "placed on the right side"],
}


def world_concept_seeds() -> dict[str, list[str]]:
    """Concept seeds for the world (``--seeds-out``): :data:`head_roles.corpus.CONCEPT_SEEDS` with
    :data:`WORLD_SEEDS` in place of theirs."""
    from head_roles.corpus import CONCEPT_SEEDS  # pure Python; imported here so that rendering needs no head_roles

    return {c: list(WORLD_SEEDS.get(c, ts)) for c, ts in CONCEPT_SEEDS.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="data")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated subset of " + ", ".join(DATASETS))
    p.add_argument("--corpus-out", default="", help="also write the world's description corpus here")
    p.add_argument("--seeds-out", default="", help="also write the world's concept seeds here (JSON)")
    own = "".join(f"; {d.folder} adds {dict(d.domain)}" for d in DATASETS.values() if d.domain)
    p.add_argument("--domain", default="", help="change every data set's domain from its calibrated one "
                   f"({DOMAIN}{own}): comma-separated KEY=VALUE, e.g. shape_rotation=180,light_marks=1")
    args = p.parse_args()
    names = args.datasets.split(",")
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        p.error(f"--datasets: unknown {', '.join(unknown)}; known: {', '.join(DATASETS)}")
    try:  # every data set's domain before any image is written
        domains = {name: DATASETS[name].calibrated_domain(args.domain) for name in names}
    except ValueError as e:
        p.error(str(e))
    for name in names:
        ddir = write_dataset(args.root, name, args.seed, domain=domains[name])
        print(f"{name}: {ddir} ({len(dataset_classes(name, args.seed))} classes)")
    if args.corpus_out:
        os.makedirs(osp.dirname(osp.abspath(args.corpus_out)), exist_ok=True)
        with open(args.corpus_out, "w") as f:
            f.write("\n".join(world_corpus()) + "\n")
    if args.seeds_out:
        os.makedirs(osp.dirname(osp.abspath(args.seeds_out)), exist_ok=True)
        with open(args.seeds_out, "w") as f:
            json.dump(world_concept_seeds(), f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
