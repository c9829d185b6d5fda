"""Config keys this project adds to Dassl's defaults; each trainer adds its own with ``@trainer_config``."""
from __future__ import annotations

from typing import Callable

from yacs.config import CfgNode as CN

_TRAINER_CONFIGS: list[Callable[[CN], None]] = []


def trainer_config(fn: Callable[[CN], None]) -> Callable[[CN], None]:
    """Register ``fn(cfg)`` that declares a trainer's ``cfg.TRAINER.<NAME>`` keys."""
    _TRAINER_CONFIGS.append(fn)
    return fn


def extend_cfg(cfg: CN) -> CN:
    """Add the keys of this project and of every registered trainer (on the real Dassl's defaults too)."""
    cfg.DATASET.SUBSAMPLE_CLASSES = "all"  # all, base or new (base-to-novel protocol)
    cfg.DATASET.PROMPT_TEMPLATE = ""  # overrides the per-dataset template of Table 4 when set
    cfg.DATASET.FOLDER = CN()
    cfg.DATASET.FOLDER.DIR = ""  # ImageFolder data set: folder (absolute or under DATASET.ROOT)
    cfg.MODEL.BACKBONE.PATH = ""  # CLIP weights file (or folder holding it); empty: $CLIP_CACHE, ~/.cache/clip
    for fn in _TRAINER_CONFIGS:
        fn(cfg)
    return cfg
