"""Finding image files: one list of extensions and two listers for data sets and command-line tools."""
from __future__ import annotations

import os
import os.path as osp

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def images_in(folder: str) -> list[str]:
    """Names of the image files directly in ``folder`` (hidden files skipped), sorted."""
    return sorted(f for f in os.listdir(folder) if not f.startswith(".") and f.lower().endswith(IMAGE_EXTS))


def list_images(path: str) -> list[str]:
    """``[path]`` for an image file, else every image under the folder ``path`` (recursive), sorted.

    Raises ``FileNotFoundError`` naming the path when it is neither, or holds no image.
    """
    if osp.isfile(path):
        return [path]
    if not osp.isdir(path):
        raise FileNotFoundError(f"{path!r} is neither an image file nor a folder")
    images = sorted(osp.join(root, f) for root, _, files in os.walk(path) for f in files
                    if f.lower().endswith(IMAGE_EXTS))
    if not images:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTS)}) under {path}")
    return images
