"""Build tiny fake data trees in the exact layouts the 15 CoOp readers and ImageFolder expect."""
from __future__ import annotations

import csv
import json
import os
import os.path as osp

import numpy as np
from PIL import Image

# name -> (dataset folder, image folder, split file or None)
SPLIT_DATASETS = {
    "Caltech101": ("caltech-101", "101_ObjectCategories", "split_zhou_Caltech101.json"),
    "OxfordPets": ("oxford_pets", "images", "split_zhou_OxfordPets.json"),
    "StanfordCars": ("stanford_cars", "", "split_zhou_StanfordCars.json"),
    "OxfordFlowers": ("oxford_flowers", "jpg", "split_zhou_OxfordFlowers.json"),
    "Food101": ("food-101", "images", "split_zhou_Food101.json"),
    "SUN397": ("sun397", "SUN397", "split_zhou_SUN397.json"),
    "DescribableTextures": ("dtd", "images", "split_zhou_DescribableTextures.json"),
    "EuroSAT": ("eurosat", "2750", "split_zhou_EuroSAT.json"),
    "UCF101": ("ucf101", "UCF-101-midframes", "split_zhou_UCF101.json"),
}
TEST_ONLY = {
    "ImageNetV2": ("imagenetv2", "imagenetv2-matched-frequency-format-val"),
    "ImageNetSketch": ("imagenet-sketch", "images"),
    "ImageNetA": ("imagenet-adversarial", "imagenet-a"),
    "ImageNetR": ("imagenet-rendition", "imagenet-r"),
}
ALL_DATASETS = list(SPLIT_DATASETS) + ["FGVCAircraft", "ImageNet"] + list(TEST_ONLY)
# Noise seed offsets per split: images depend on (label, split, index) only, the same in every process
# (``hash()`` of a tuple with a str is salted per process by PYTHONHASHSEED).
_SPLIT_OFFSET = {"train": 0, "val": 300, "test": 600}


def class_names(n: int) -> list[str]:
    return [f"class_{chr(ord('a') + i)}" for i in range(n)]


def write_image(path: str, label: int, idx: int, size: int = 32) -> None:
    """A small image whose colour depends on the label, so a trained model can tell classes apart."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    rng = np.random.default_rng(label * 1000 + idx)
    base = np.array([(label * 67) % 256, (label * 131) % 256, (label * 197) % 256], dtype=np.float32)
    arr = np.clip(base + rng.normal(0, 20, size=(size, size, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(arr).save(path)


def make_split_dataset(root: str, name: str, n_classes: int = 4, per_split=(3, 1, 2)) -> str:
    """``per_split``: images per class in (train, val, test); at most 300 each."""
    ddir, idir, split_file = SPLIT_DATASETS[name]
    image_root = osp.join(root, ddir, idir)
    split = {"train": [], "val": [], "test": []}
    for label, cname in enumerate(class_names(n_classes)):
        for s, n in zip(("train", "val", "test"), per_split):
            for i in range(n):
                rel = f"{cname}/{s}_{i}.jpg"
                write_image(osp.join(image_root, rel), label, _SPLIT_OFFSET[s] + i)
                split[s].append([rel, label, cname.replace("_", " ")])
    with open(osp.join(root, ddir, split_file), "w") as f:
        json.dump(split, f)
    return osp.join(root, ddir)


def make_fgvc(root: str, n_classes: int = 4, per_split=(3, 1, 2)) -> str:
    ddir = osp.join(root, "fgvc_aircraft")
    names = [f"Boeing 7{i}7" for i in range(n_classes)]
    with open(osp.join(_mk(ddir), "variants.txt"), "w") as f:
        f.write("\n".join(names) + "\n")
    k = 0
    for s, n in zip(("train", "val", "test"), per_split):
        with open(osp.join(ddir, f"images_variant_{s}.txt"), "w") as f:
            for label, cname in enumerate(names):
                for _ in range(n):
                    imid = f"{1000000 + k}"
                    k += 1
                    write_image(osp.join(ddir, "images", imid + ".jpg"), label, k)
                    f.write(f"{imid} {cname}\n")
    return ddir


def _wnids(n: int) -> list[str]:
    return [f"n{1440764 + i:08d}" for i in range(n)]


def write_classnames(path: str, n: int) -> None:
    with open(path, "w") as f:
        for wnid, cname in zip(_wnids(n), class_names(n)):
            f.write(f"{wnid} {cname.replace('_', ' ')}\n")


def make_imagenet(root: str, n_classes: int = 4, per_split=(3, 2), flat_val: bool = False) -> str:
    ddir = _mk(osp.join(root, "imagenet"))
    write_classnames(osp.join(ddir, "classnames.txt"), n_classes)
    for label, wnid in enumerate(_wnids(n_classes)):
        for i in range(per_split[0]):
            write_image(osp.join(ddir, "images", "train", wnid, f"{wnid}_{i}.JPEG"), label, i)
        for i in range(per_split[1]):
            val_dir = osp.join(ddir, "images", "val") if flat_val else osp.join(ddir, "images", "val", wnid)
            write_image(osp.join(val_dir, f"ILSVRC2012_val_{label:04d}{i:04d}.JPEG"), label, 100 + i)
    return ddir


def make_test_only(root: str, name: str, n_classes: int = 4, n_images: int = 2) -> str:
    ddir, idir = TEST_ONLY[name]
    ddir = _mk(osp.join(root, ddir))
    write_classnames(osp.join(ddir, "classnames.txt"), n_classes)
    wnids = _wnids(n_classes)
    present = range(n_classes) if name in ("ImageNetV2", "ImageNetSketch") else range(0, n_classes, 2)
    for label in present:
        folder = str(label) if name == "ImageNetV2" else wnids[label]
        for i in range(n_images):
            write_image(osp.join(ddir, idir, folder, f"img_{i}.jpg"), label, i)
    return ddir


def make_image_folder(root: str, n_classes: int = 4, per_split=(3, 2), as_csv: bool = False) -> str:
    ddir = _mk(osp.join(root, "my_folder"))
    for s, n in zip(("train", "test"), per_split):
        rows = []
        for label, cname in enumerate(class_names(n_classes)):
            for i in range(n):
                rel = osp.join("imgs" if as_csv else s, cname, f"{s}_{i}.png")
                write_image(osp.join(ddir, rel), label, i)
                rows.append((rel, cname))
        if as_csv:
            with open(osp.join(ddir, f"{s}.csv"), "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["path", "label"])
                w.writerows(rows)
    return ddir


def make_dataset(root: str, name: str, n_classes: int = 4, per_split: tuple[int, int, int] | None = None) -> str:
    """A fake tree for the data set ``name``; ``per_split`` (train, val, test images per class) for the nine
    split-file data sets."""
    if name in SPLIT_DATASETS:
        return make_split_dataset(root, name, n_classes, per_split or (3, 1, 2))
    if name == "FGVCAircraft":
        return make_fgvc(root, n_classes)
    if name == "ImageNet":
        return make_imagenet(root, n_classes)
    if name in TEST_ONLY:
        return make_test_only(root, name, n_classes)
    raise KeyError(name)


def _mk(path: str) -> str:
    os.makedirs(path, exist_ok=True)
    return path


def write_tiny_roles(path: str, num_layers: int = 6, num_heads: int = 4, width: int = 256) -> str:
    """A valid roles file for a tiny CLIP: every role and every core attribute appears in the last 4 layers."""
    pattern = [
        ("attribute", "color"), ("generalization", "style"), ("attribute", "shape"), ("mixed", "none"),
        ("attribute", "texture"), ("other_specialized", "animal"), ("attribute", "object"), ("generalization", "style"),
        ("attribute", "location"), ("attribute", "color"), ("other_specialized", "text"), ("mixed", "none"),
        ("attribute", "object"), ("generalization", "style"), ("attribute", "texture"), ("attribute", "shape"),
    ]
    layers = list(range(num_layers - 3, num_layers + 1))
    heads = []
    for i, layer in enumerate(layers):
        for h in range(num_heads):
            role, concept = pattern[(i * num_heads + h) % len(pattern)]
            heads.append({"layer": layer, "head": h, "role": role, "concept": concept, "phrases": []})
    doc = {"schema_version": 1, "backbone": "tiny", "num_layers": num_layers, "num_heads": num_heads,
           "width": width, "layers": layers, "core_attributes": ["color", "shape", "texture", "object", "location"],
           "heads": heads}
    with open(path, "w") as f:
        json.dump(doc, f)
    return path
