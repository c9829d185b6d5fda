"""FGVC-Aircraft: ``fgvc_aircraft/images`` with ``variants.txt`` and ``images_variant_{train,val,test}.txt``."""
import os.path as osp

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .coop_split import CoOpDataset, require


@DATASET_REGISTRY.register()
class FGVCAircraft(CoOpDataset):
    """Labels follow the order of ``variants.txt``; each split file lists ``<image id> <variant name>``."""

    dataset_dir = "fgvc_aircraft"
    image_dir = "images"
    source = "Download fgvc-aircraft-2013b.tar.gz and move its data/ folder to fgvc_aircraft/ (CoOp's DATASETS.md)."

    def read_data(self):
        name = type(self).__name__
        variants = require(osp.join(self.dataset_dir, "variants.txt"), "variants.txt", name, self.source)
        require(self.image_dir, "image folder", name, self.source)
        with open(variants) as f:
            classnames = [line.strip() for line in f if line.strip()]
        cname2lab = {c: i for i, c in enumerate(classnames)}
        splits = []
        for split in ("train", "val", "test"):
            fname = f"images_variant_{split}.txt"
            fpath = require(osp.join(self.dataset_dir, fname), fname, name, self.source)
            items = []
            with open(fpath) as f:
                for lineno, line in enumerate(f, 1):
                    parts = line.strip().split(" ")
                    if not parts or not parts[0]:
                        continue
                    classname = " ".join(parts[1:])
                    if classname not in cname2lab:
                        raise ValueError(f"{fpath}:{lineno}: variant {classname!r} is not in variants.txt")
                    items.append(Datum(impath=osp.join(self.image_dir, parts[0] + ".jpg"),
                                       label=cname2lab[classname], classname=classname))
            splits.append(items)
        return tuple(splits)
