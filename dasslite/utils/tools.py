"""File, image and seeding helpers."""
from __future__ import annotations

import json
import os
import os.path as osp
import random
import warnings

import numpy as np
import torch
from PIL import Image


def mkdir_if_missing(dirname: str) -> None:
    os.makedirs(dirname, exist_ok=True)


def check_isfile(fpath: str) -> bool:
    isfile = osp.isfile(fpath)
    if not isfile:
        warnings.warn(f'No file found at "{fpath}"', stacklevel=2)
    return isfile


def read_json(fpath: str):
    with open(fpath) as f:
        return json.load(f)


def write_json(obj, fpath: str) -> None:
    """Write ``obj`` as JSON to ``fpath`` atomically (temporary file, then rename)."""
    from .atomic import atomic_open

    with atomic_open(fpath, "w") as f:
        json.dump(obj, f, indent=4, separators=(",", ": "))


def listdir_nohidden(path: str, sort: bool = False) -> list[str]:
    items = [f for f in os.listdir(path) if not f.startswith(".")]
    if sort:
        items.sort()
    return items


def read_image(path: str) -> Image.Image:
    """Open an image as RGB; a missing or unreadable file raises an error that names it."""
    if not osp.exists(path):
        raise FileNotFoundError(f"Image not found: {path}")
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except Exception as e:  # PIL raises several types for corrupt data
        raise OSError(f"Cannot read image {path}: {e}. The file is corrupt or not an image; "
                      f"re-extract it from the data set archive or remove it from the split.") from e


def set_random_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def collect_env_info() -> str:
    import platform

    import torchvision

    lines = [
        f"Python: {platform.python_version()}",
        f"PyTorch: {torch.__version__}",
        f"Torchvision: {torchvision.__version__}",
        f"CUDA available: {torch.cuda.is_available()}",
    ]
    if torch.cuda.is_available():
        lines.append(f"GPU: {torch.cuda.get_device_name(0)}")
    lines.append(f"Platform: {platform.platform()}")
    return "\n".join(lines)
