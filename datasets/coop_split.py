"""What every CoOp-layout data set shares: split files, few-shot caches and base/new class subsampling.

Formats (those of CoOp's DATASETS.md, so an existing ``DATA/`` folder works unchanged):
- ``split_zhou_<Name>.json``: ``{"train": [[relpath, label, classname], ...], "val": [...], "test": [...]}``
  with paths relative to the data set's image folder;
- ``split_fewshot/shot_<K>-seed_<S>.pkl``: a pickle ``{"train": [Datum], "val": [Datum]}`` (CoOp's ImageNet
  caches hold ``train`` only). Read with a restricted unpickler (no code runs from it), written atomically with
  ``Datum`` under Dassl's class path, so CoOp reads ours and we read CoOp's
  (:mod:`dasslite.data.datasets.cache`).
"""
from __future__ import annotations

import math
import os
import os.path as osp
import random
from collections import defaultdict

from dassl.data.datasets import DatasetBase, Datum
from dassl.utils import mkdir_if_missing, read_json, write_json

from dasslite.data.datasets.cache import CacheError, check_datum_list, load_cache, save_cache

SUBSAMPLE_CHOICES = ("all", "base", "new")


class DatasetNotFound(FileNotFoundError):
    """A data set folder or one of its files is missing."""


def require(path: str, what: str, dataset: str, source: str) -> str:
    """Return ``path`` or raise :class:`DatasetNotFound` naming it, what it is and where it comes from."""
    if not osp.exists(path):
        raise DatasetNotFound(
            f"{dataset}: missing {what} at {path}. {source} "
            "See README 'Data' (CoOp's DATASETS.md layout) and check DATASET.ROOT / --root."
        )
    return path


def read_split(filepath: str, path_prefix: str) -> tuple[list[Datum], list[Datum], list[Datum]]:
    """Read a ``split_zhou_*.json`` file; image paths become ``path_prefix/relpath``."""
    try:
        split = read_json(filepath)
    except ValueError as e:
        raise ValueError(f"{filepath} is not valid JSON ({e}); download the split file again") from e

    def _convert(items, key):
        out = []
        for i, entry in enumerate(items):
            if not (isinstance(entry, (list, tuple)) and len(entry) == 3):
                raise ValueError(f"{filepath}: {key}[{i}] must be [path, label, classname], got {entry!r}")
            impath, label, classname = entry
            out.append(Datum(impath=osp.join(path_prefix, impath), label=int(label), classname=classname))
        return out

    missing = [k for k in ("train", "val", "test") if k not in split]
    if missing:
        raise ValueError(f"{filepath} lacks the keys {missing}; a CoOp split file has train, val and test")
    print(f"Reading split from {filepath}")
    return _convert(split["train"], "train"), _convert(split["val"], "val"), _convert(split["test"], "test")


def save_split(train, val, test, filepath: str, path_prefix: str) -> None:
    """Write a split in the ``split_zhou_*.json`` format (paths relative to ``path_prefix``)."""

    def _extract(items):
        out = []
        for item in items:
            impath = item.impath.replace(path_prefix, "", 1).lstrip("/")
            out.append((impath, int(item.label), item.classname))
        return out

    write_json({"train": _extract(train), "val": _extract(val), "test": _extract(test)}, filepath)
    print(f"Saved split to {filepath}")


def subsample_classes(*args, subsample: str = "all"):
    """Keep the first half of the labels (``base``, rounded up) or the second half (``new``), relabelled
    from 0, as CoOp does. ``all`` returns the inputs unchanged."""
    if subsample not in SUBSAMPLE_CHOICES:
        raise ValueError(f"DATASET.SUBSAMPLE_CLASSES={subsample!r}; choose one of {SUBSAMPLE_CHOICES}")
    if subsample == "all":
        return args
    labels = sorted({item.label for item in args[0]})
    m = math.ceil(len(labels) / 2)
    selected = labels[:m] if subsample == "base" else labels[m:]
    print(f"SUBSAMPLE {subsample.upper()} CLASSES!")
    relabeler = {y: y_new for y_new, y in enumerate(selected)}
    output = []
    for dataset in args:
        output.append([
            Datum(impath=item.impath, label=relabeler[item.label], classname=item.classname)
            for item in dataset if item.label in relabeler
        ])
    return output


def split_trainval(trainval: list[Datum], p_val: float = 0.2) -> tuple[list[Datum], list[Datum]]:
    """Split per class into train and val (``p_val`` of each class, at least one, in val)."""
    by_label: dict[int, list[Datum]] = {}
    for item in trainval:
        by_label.setdefault(item.label, []).append(item)
    train, val = [], []
    for label in sorted(by_label):
        idxs = by_label[label][:]
        random.shuffle(idxs)
        n_val = max(1, round(len(idxs) * p_val)) if len(idxs) > 1 else 0
        val.extend(idxs[:n_val])
        train.extend(idxs[n_val:])
    return train, val


class CoOpDataset(DatasetBase):
    """A data set described by a CoOp split file, with seeded, cached few-shot sampling and base/new split.

    Subclasses set ``dataset_dir``, ``image_dir`` and ``split_file`` (or override :meth:`read_data`) and
    optionally ``source`` (where to get the data).
    """

    dataset_dir = ""
    image_dir = ""
    split_file = ""
    source = ""

    def __init__(self, cfg) -> None:
        root = osp.abspath(osp.expanduser(cfg.DATASET.ROOT))
        self.dataset_dir = osp.join(root, self.folder_name(cfg))
        self.image_dir = osp.join(self.dataset_dir, type(self).image_dir)
        self.split_fewshot_dir = osp.join(self.dataset_dir, "split_fewshot")
        require(self.dataset_dir, "data set folder", type(self).__name__, self.source)
        train, val, test = self.read_data()
        train, val = self.fewshot(cfg, train, val)
        subsample = cfg.DATASET.SUBSAMPLE_CLASSES
        train, val, test = subsample_classes(train, val, test, subsample=subsample)
        self.check_labels(train, test)
        self.check_images(train=train, val=val, test=test)
        super().__init__(train_x=train, val=val, test=test)

    def folder_name(self, cfg) -> str:
        """The data set's folder under ``DATASET.ROOT`` (an absolute path is used as it is)."""
        return type(self).dataset_dir

    def read_data(self) -> tuple[list[Datum], list[Datum], list[Datum]]:
        split_path = require(osp.join(self.dataset_dir, self.split_file), f"split file {self.split_file}",
                             type(self).__name__, self.source)
        require(self.image_dir, "image folder", type(self).__name__, self.source)
        return read_split(split_path, self.image_dir)

    def check_labels(self, train: list[Datum], test: list[Datum]) -> None:
        """Every class that is tested must have training images (else the model has no output for it)."""
        if not train:
            return
        trained = {item.label for item in train}
        untrained = sorted({(item.label, item.classname) for item in test if item.label not in trained})
        if untrained:
            names = ", ".join(f"{c!r}" for _, c in untrained[:5])
            n = len(untrained)
            raise DatasetNotFound(
                f"{type(self).__name__}: {n} tested {'class has' if n == 1 else 'classes have'} no training "
                f"image ({names}) in "
                f"{self.dataset_dir}; add images for them or remove them from the test split"
            )

    def check_images(self, n_examples: int = 3, **splits: list[Datum]) -> None:
        """Fail before any work if an image this run will read is missing (one listing per folder, so it is
        cheap even for ImageNet); decode errors are still reported, with the file, when the image is read."""
        listings: dict[str, set[str]] = {}
        missing: dict[str, list[str]] = defaultdict(list)
        for split, items in splits.items():
            for item in items or []:
                folder, name = osp.split(item.impath)
                if folder not in listings:
                    try:
                        listings[folder] = set(os.listdir(folder))
                    except OSError:
                        listings[folder] = set()
                if name not in listings[folder]:
                    missing[split].append(item.impath)
        if missing:
            parts = [f"{len(paths)} of {len(splits[split])} {split} images (e.g. {', '.join(paths[:n_examples])})"
                     for split, paths in missing.items()]
            raise DatasetNotFound(
                f"{type(self).__name__}: missing images: {'; '.join(parts)}. The image folder {self.image_dir} "
                f"is incomplete or DATASET.ROOT points elsewhere; re-extract the archive. {self.source}"
            )

    def fewshot(self, cfg, train: list[Datum], val: list[Datum]) -> tuple[list[Datum], list[Datum]]:
        """``NUM_SHOTS`` per class for train and ``min(NUM_SHOTS, 4)`` for val, cached per seed."""
        num_shots = cfg.DATASET.NUM_SHOTS
        if num_shots < 1:
            return train, val
        seed = cfg.SEED
        preprocessed = osp.join(self.split_fewshot_dir, f"shot_{num_shots}-seed_{seed}.pkl")
        if osp.exists(preprocessed):
            print(f"Loading preprocessed few-shot data from {preprocessed}")
            return self.read_fewshot_cache(preprocessed, val)
        rng_state = random.getstate()
        random.seed(seed)  # the sample depends on the seed only, not on what ran before
        try:
            train = self.generate_fewshot_dataset(train, num_shots=num_shots)
            val = self.generate_fewshot_dataset(val, num_shots=min(num_shots, 4))
        finally:
            random.setstate(rng_state)
        print(f"Saving preprocessed few-shot data to {preprocessed}")
        mkdir_if_missing(self.split_fewshot_dir)
        save_cache({"train": train, "val": val}, preprocessed)
        return train, val

    def read_fewshot_cache(self, path: str, full_val: list[Datum]) -> tuple[list[Datum], list[Datum]]:
        """A few-shot cache of this project, CoOp or Dassl. CoOp's ImageNet caches hold ``train`` only; the
        val split is then empty when the data set has none (ImageNet here), else the file is refused."""
        rebuild = "it is sampled again from SEED (the same sample) on the next run"
        data = load_cache(path, "few-shot cache", rebuild)
        if not isinstance(data, dict) or "train" not in data:
            raise CacheError(f"{path}: not a few-shot cache (no 'train' list); delete it, {rebuild}")
        train = check_datum_list(data["train"], path, "train")
        if "val" in data:
            val = check_datum_list(data["val"], path, "val")
        elif not full_val:
            val = []
        else:
            raise CacheError(f"{path} holds no 'val' list but {type(self).__name__} has a val split; delete it, "
                             f"{rebuild}")
        return self._rebase(train), self._rebase(val)

    def _rebase(self, items: list[Datum]) -> list[Datum]:
        """Cached few-shot files hold absolute paths; follow the data set if its root moved."""
        out = []
        for item in items:
            impath = item.impath
            if not osp.exists(impath):
                marker = osp.basename(self.dataset_dir) + os.sep
                if marker in impath:
                    impath = osp.join(self.dataset_dir, impath.split(marker, 1)[1])
            out.append(Datum(impath=impath, label=item.label, domain=item.domain, classname=item.classname))
        return out


# CoOp-family dataset modules call these as OxfordPets.read_split(...) etc.; keep that spelling working.
CoOpDataset.read_split = staticmethod(read_split)
CoOpDataset.save_split = staticmethod(save_split)
CoOpDataset.subsample_classes = staticmethod(subsample_classes)
CoOpDataset.split_trainval = staticmethod(split_trainval)
