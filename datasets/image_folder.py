"""A data set from any folder, without writing a class: ``DATASET.NAME ImageFolder``.

Layouts under ``DATASET.FOLDER.DIR`` (absolute, or relative to ``DATASET.ROOT``):
- folders: ``train/<class>/*.jpg``, ``test/<class>/*.jpg`` and optionally ``val/<class>/*.jpg``;
- CSV: ``train.csv``, ``test.csv`` (optional ``val.csv``) with a header ``path,label``, ``path`` relative
  to the folder and ``label`` the class name.
Classes are the sorted class names of all splits; few-shot sampling and base/new splits work as for the
CoOp data sets. Underscores in class names become spaces in prompts.
"""
from __future__ import annotations

import csv
import os.path as osp

from dassl.data.datasets import DATASET_REGISTRY, Datum
from dassl.utils import listdir_nohidden

from clipkit.images import IMAGE_EXTS
from clipkit.images import images_in as _images_in

from .coop_split import CoOpDataset, DatasetNotFound


@DATASET_REGISTRY.register()
class ImageFolder(CoOpDataset):
    """Generic folder or CSV data set; see the module docstring for the layouts."""

    source = "Set DATASET.FOLDER.DIR to a folder with train/ and test/ (class subfolders) or train.csv/test.csv."

    def folder_name(self, cfg) -> str:
        if not cfg.DATASET.FOLDER.DIR:
            raise DatasetNotFound("ImageFolder: DATASET.FOLDER.DIR is empty. " + self.source)
        return cfg.DATASET.FOLDER.DIR

    def read_data(self):
        base = self.dataset_dir
        raw: dict[str, list[tuple[str, str]]] = {}
        for split in ("train", "val", "test"):
            raw[split] = self._read_split(base, split)
        if not raw["test"]:
            raise DatasetNotFound(f"ImageFolder: no test images in {base} (need test/<class>/ or test.csv). "
                                  + self.source)
        classnames = sorted({c for items in raw.values() for _, c in items})
        cname2lab = {c: i for i, c in enumerate(classnames)}
        out = []
        for split in ("train", "val", "test"):
            out.append([Datum(impath=p, label=cname2lab[c], classname=c.replace("_", " ")) for p, c in raw[split]])
        return tuple(out)

    @staticmethod
    def _read_split(base: str, split: str) -> list[tuple[str, str]]:
        csv_path = osp.join(base, f"{split}.csv")
        if osp.isfile(csv_path):
            items = []
            with open(csv_path, newline="") as f:
                reader = csv.DictReader(f)
                if reader.fieldnames is None or not {"path", "label"} <= set(reader.fieldnames):
                    raise ValueError(f"{csv_path} needs a header with the columns 'path,label'")
                for row in reader:
                    items.append((osp.join(base, row["path"]), row["label"]))
            return items
        split_dir = osp.join(base, split)
        if not osp.isdir(split_dir):
            return []
        items = []
        for cname in listdir_nohidden(split_dir, sort=True):
            cdir = osp.join(split_dir, cname)
            if osp.isdir(cdir):
                images = _images_in(cdir)
                if not images:
                    raise DatasetNotFound(
                        f"ImageFolder: the class folder {cdir} holds no images ({', '.join(IMAGE_EXTS)}); add "
                        "images to it or remove it (an empty class would shift every label after it, or be "
                        "scored without being trained)"
                    )
                items.extend((osp.join(cdir, f), cname) for f in images)
        return items
