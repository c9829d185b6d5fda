"""``DataManager``: builds the data set and its train / val / test loaders."""
from __future__ import annotations

import torch
from tabulate import tabulate
from torch.utils.data import Dataset as TorchDataset

from ..utils import read_image
from .datasets import build_dataset
from .transforms import build_transform


class DatasetWrapper(TorchDataset):
    """Turns a list of :class:`Datum` into dicts ``{img, label, domain, impath, index}``."""

    def __init__(self, cfg, data_source, transform=None, is_train: bool = False) -> None:
        self.cfg = cfg
        self.data_source = data_source
        self.transform = transform
        self.is_train = is_train
        self.k_tfm = cfg.DATALOADER.K_TRANSFORMS if is_train else 1
        self.return_img0 = cfg.DATALOADER.RETURN_IMG0
        if self.k_tfm > 1 and transform is None:
            raise ValueError("Cannot augment the image {} times because transform is None".format(self.k_tfm))

    def __len__(self) -> int:
        return len(self.data_source)

    def __getitem__(self, idx: int) -> dict:
        item = self.data_source[idx]
        output = {"label": item.label, "domain": item.domain, "impath": item.impath, "index": idx}
        img0 = read_image(item.impath)
        if self.transform is not None:
            if self.k_tfm > 1:
                output["img"] = [self.transform(img0) for _ in range(self.k_tfm)]
            else:
                output["img"] = self.transform(img0)
        else:
            from torchvision.transforms.functional import to_tensor

            output["img"] = to_tensor(img0)
        if self.return_img0:
            from torchvision.transforms.functional import to_tensor

            output["img0"] = to_tensor(img0)
        return output


def build_data_loader(cfg, sampler_type: str = "SequentialSampler", data_source=None, batch_size: int = 64,
                      n_domain: int = 0, n_ins: int = 2, tfm=None, is_train: bool = True,
                      dataset_wrapper=None) -> torch.utils.data.DataLoader:
    """A ``DataLoader`` over ``data_source`` with a random or sequential sampler."""
    if sampler_type not in ("RandomSampler", "SequentialSampler"):
        raise ValueError(f"Sampler {sampler_type!r} is not supported; use RandomSampler or SequentialSampler")
    wrapper = dataset_wrapper or DatasetWrapper
    dataset = wrapper(cfg, data_source, transform=tfm, is_train=is_train)
    generator = None
    if cfg.SEED >= 0:
        generator = torch.Generator().manual_seed(cfg.SEED)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=sampler_type == "RandomSampler",
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        drop_last=is_train and len(data_source) >= batch_size,
        pin_memory=torch.cuda.is_available() and cfg.USE_CUDA,
        generator=generator,
        persistent_workers=False,
    )


class DataManager:
    """Builds the data set named in ``cfg`` and exposes its loaders and label names."""

    def __init__(self, cfg, custom_tfm_train=None, custom_tfm_test=None, dataset_wrapper=None) -> None:
        dataset = build_dataset(cfg)
        tfm_train = custom_tfm_train or build_transform(cfg, is_train=True)
        tfm_test = custom_tfm_test or build_transform(cfg, is_train=False)

        self.train_loader_x = None
        if dataset.train_x:
            self.train_loader_x = build_data_loader(
                cfg, sampler_type=cfg.DATALOADER.TRAIN_X.SAMPLER, data_source=dataset.train_x,
                batch_size=cfg.DATALOADER.TRAIN_X.BATCH_SIZE, tfm=tfm_train, is_train=True,
                dataset_wrapper=dataset_wrapper,
            )
        self.train_loader_u = None

        def eval_loader(data_source):
            return build_data_loader(
                cfg, sampler_type=cfg.DATALOADER.TEST.SAMPLER, data_source=data_source,
                batch_size=cfg.DATALOADER.TEST.BATCH_SIZE, tfm=tfm_test, is_train=False,
                dataset_wrapper=dataset_wrapper,
            )

        self.val_loader = eval_loader(dataset.val) if dataset.val else None
        self.test_loader = eval_loader(dataset.test)
        self._num_classes = dataset.num_classes
        self._num_source_domains = max(len(cfg.DATASET.SOURCE_DOMAINS), 1)
        self._lab2cname = dataset.lab2cname
        self.dataset = dataset
        self.tfm_train = tfm_train
        self.tfm_test = tfm_test
        if cfg.VERBOSE:
            self.show_dataset_summary(cfg)

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def num_source_domains(self) -> int:
        return self._num_source_domains

    @property
    def lab2cname(self) -> dict[int, str]:
        return self._lab2cname

    def show_dataset_summary(self, cfg) -> None:
        table = [["Dataset", cfg.DATASET.NAME]]
        if cfg.DATASET.SOURCE_DOMAINS:
            table.append(["Source", cfg.DATASET.SOURCE_DOMAINS])
        if cfg.DATASET.TARGET_DOMAINS:
            table.append(["Target", cfg.DATASET.TARGET_DOMAINS])
        table.append(["# classes", f"{self.num_classes:,}"])
        table.append(["# train_x", f"{len(self.dataset.train_x or []):,}"])
        if self.dataset.val:
            table.append(["# val", f"{len(self.dataset.val):,}"])
        table.append(["# test", f"{len(self.dataset.test):,}"])
        print(tabulate(table))
