"""ImageNet and its four test-only variants (ImageNetV2, -Sketch, -A, -R), in CoOp's layout.

Listing order: this project lists the images of each class folder in sorted order, so the listing (and the
few-shot sample drawn from it) is the same on every machine. CoOp keeps ``os.listdir`` order, which depends on
the file system, so the two draw different few-shot samples from the same folders. ``preprocessed.pkl`` (the
listing) and ``split_fewshot/*.pkl`` (the samples) of either are read as they are: to train on CoOp's exact
samples, copy CoOp's ``imagenet/preprocessed.pkl`` and ``imagenet/split_fewshot/`` into ``DATA/imagenet/``.
"""
from __future__ import annotations

import os
import os.path as osp
from collections import OrderedDict

from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum
from dassl.utils import listdir_nohidden

from clipkit.images import images_in as _images_in
from dasslite.data.datasets.cache import CacheError, check_datum_list, load_cache, save_cache

from .coop_split import CoOpDataset, DatasetNotFound, require


def read_classnames(text_file: str) -> OrderedDict[str, str]:
    """``classnames.txt``: one ``<wnid> <class name>`` per line."""
    classnames: OrderedDict[str, str] = OrderedDict()
    with open(text_file) as f:
        for lineno, line in enumerate(f, 1):
            parts = line.strip().split(" ")
            if not parts[0]:
                continue
            if len(parts) < 2:
                raise ValueError(f"{text_file}:{lineno}: expected '<wnid> <class name>', got {line.strip()!r}")
            classnames[parts[0]] = " ".join(parts[1:])
    return classnames


@DATASET_REGISTRY.register()
class ImageNet(CoOpDataset):
    """``imagenet/images/{train,val}/<wnid>/*.JPEG`` + ``imagenet/classnames.txt``; test = the val set."""

    dataset_dir = "imagenet"
    image_dir = "images"
    source = ("Get ILSVRC2012 train/val from image-net.org, put them under imagenet/images/ with one "
              "folder per wnid, and copy CoOp's classnames.txt to imagenet/.")

    def read_data(self):
        name = type(self).__name__
        text_file = require(osp.join(self.dataset_dir, "classnames.txt"), "classnames.txt", name, self.source)
        preprocessed = osp.join(self.dataset_dir, "preprocessed.pkl")
        if osp.exists(preprocessed):
            rebuild = "it is rebuilt from images/ on the next run"
            data = load_cache(preprocessed, "ImageNet listing cache", rebuild)
            if not isinstance(data, dict) or "train" not in data or "test" not in data:
                raise CacheError(f"{preprocessed}: not an ImageNet listing (needs 'train' and 'test'); delete it, "
                                 f"{rebuild}")
            train = self._rebase(check_datum_list(data["train"], preprocessed, "train"))
            test = self._rebase(check_datum_list(data["test"], preprocessed, "test"))
            return train, [], test
        classnames = read_classnames(text_file)
        for split in ("train", "val"):
            require(osp.join(self.image_dir, split), f"images/{split} folder", name, self.source)
        val_dir = osp.join(self.image_dir, "val")
        flat = _images_in(val_dir)
        if flat:
            raise DatasetNotFound(
                f"ImageNet: {val_dir} holds {len(flat)} images directly (e.g. {flat[0]}), the flat layout of "
                "the official archive. CoOp's layout needs one folder per wnid: images/val/n01440764/*.JPEG. "
                "Sort them with the devkit's ground truth (e.g. the widely used valprep.sh script), then rerun."
            )
        train = self._read_split(classnames, "train")
        test = self._read_split(classnames, "val")
        save_cache({"train": train, "test": test}, preprocessed)
        return train, [], test

    def _read_split(self, classnames: OrderedDict[str, str], split: str) -> list[Datum]:
        split_dir = osp.join(self.image_dir, split)
        folders = sorted(f.name for f in os.scandir(split_dir) if f.is_dir())
        unknown = [f for f in folders if f not in classnames]
        if unknown:
            raise ValueError(f"ImageNet: folders {unknown[:3]} in {split_dir} are not in classnames.txt")
        wnid2label = {wnid: i for i, wnid in enumerate(classnames)}
        items = []
        for folder in folders:
            for imname in _images_in(osp.join(split_dir, folder)):
                items.append(Datum(impath=osp.join(split_dir, folder, imname), label=wnid2label[folder],
                                   classname=classnames[folder]))
        if not items:
            raise DatasetNotFound(f"ImageNet: no images found under {split_dir}/<wnid>/")
        return items


class ImageNetTestSet(DatasetBase):
    """A test-only ImageNet variant; ``train_x`` is the test set too (as in CoOp), so evaluate with
    ``--eval-only`` after training on ImageNet."""

    dataset_dir = ""
    image_dir = ""
    source = ""

    def __init__(self, cfg) -> None:
        root = osp.abspath(osp.expanduser(cfg.DATASET.ROOT))
        self.dataset_dir = osp.join(root, type(self).dataset_dir)
        self.image_dir = osp.join(self.dataset_dir, type(self).image_dir)
        name = type(self).__name__
        require(self.dataset_dir, "data set folder", name, self.source)
        text_file = require(osp.join(self.dataset_dir, "classnames.txt"), "classnames.txt (a copy of ImageNet's)",
                            name, self.source)
        require(self.image_dir, "image folder", name, self.source)
        data = self.read_data(read_classnames(text_file))
        if not data:
            raise DatasetNotFound(f"{name}: no images found under {self.image_dir}")
        super().__init__(train_x=data, test=data)

    def read_data(self, classnames: OrderedDict[str, str]) -> list[Datum]:
        """Folders named by wnid; labels are the folders' order (200 classes for -A and -R)."""
        folders = [f for f in listdir_nohidden(self.image_dir, sort=True) if osp.isdir(osp.join(self.image_dir, f))]
        items = []
        for label, folder in enumerate(folders):
            if folder not in classnames:
                raise ValueError(f"{type(self).__name__}: folder {folder!r} is not a wnid of classnames.txt")
            for imname in _images_in(osp.join(self.image_dir, folder)):
                items.append(Datum(impath=osp.join(self.image_dir, folder, imname), label=label,
                                   classname=classnames[folder]))
        return items


@DATASET_REGISTRY.register()
class ImageNetV2(ImageNetTestSet):
    """``imagenetv2/imagenetv2-matched-frequency-format-val/<0..999>/*.jpeg``; folder ``i`` is class ``i``."""

    dataset_dir = "imagenetv2"
    image_dir = "imagenetv2-matched-frequency-format-val"
    source = "Download ImageNetV2 matched-frequency and copy imagenet/classnames.txt into imagenetv2/."

    def read_data(self, classnames):
        names = list(classnames.values())
        items = []
        for label in range(len(names)):
            folder = osp.join(self.image_dir, str(label))
            if not osp.isdir(folder):
                continue
            for imname in _images_in(folder):
                items.append(Datum(impath=osp.join(folder, imname), label=label, classname=names[label]))
        return items


@DATASET_REGISTRY.register()
class ImageNetSketch(ImageNetTestSet):
    """``imagenet-sketch/images/<wnid>/*``."""

    dataset_dir = "imagenet-sketch"
    image_dir = "images"
    source = "Download ImageNet-Sketch, rename sketch/ to images/, copy imagenet/classnames.txt into it."

    def read_data(self, classnames):
        wnid2label = {w: i for i, w in enumerate(classnames)}
        items = []
        for folder in listdir_nohidden(self.image_dir, sort=True):
            if folder not in wnid2label:
                continue
            for imname in _images_in(osp.join(self.image_dir, folder)):
                items.append(Datum(impath=osp.join(self.image_dir, folder, imname), label=wnid2label[folder],
                                   classname=classnames[folder]))
        return items


@DATASET_REGISTRY.register()
class ImageNetA(ImageNetTestSet):
    """``imagenet-adversarial/imagenet-a/<wnid>/*`` (200 classes)."""

    dataset_dir = "imagenet-adversarial"
    image_dir = "imagenet-a"
    source = "Download ImageNet-A into imagenet-adversarial/ and copy imagenet/classnames.txt there."


@DATASET_REGISTRY.register()
class ImageNetR(ImageNetTestSet):
    """``imagenet-rendition/imagenet-r/<wnid>/*`` (200 classes)."""

    dataset_dir = "imagenet-rendition"
    image_dir = "imagenet-r"
    source = "Download ImageNet-R into imagenet-rendition/ and copy imagenet/classnames.txt there."
