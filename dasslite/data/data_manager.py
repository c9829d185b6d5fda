"""``DataManager``: builds the data set and its train / val / test loaders."""
from __future__ import annotations

import torch
import torchvision.transforms as T
from tabulate import tabulate
from torch.utils.data import Dataset as TorchDataset

from ..utils import read_image
from .datasets import build_dataset
from .. import distributed
from .samplers import EvalShard, GlobalBatchShard, build_sampler
from .transforms import INTERPOLATION_MODES, build_transform


class DatasetWrapper(TorchDataset):
    """Turns a list of :class:`Datum` into dicts ``{img, label, domain, impath, index}`` as Dassl's does.

    ``transform`` may be a list of transforms (outputs ``img``, ``img2``, ...); ``DATALOADER.K_TRANSFORMS``
    > 1 gives a list of that many augmentations per image; ``DATALOADER.RETURN_IMG0`` adds ``img0``, the image
    resized to ``INPUT.SIZE`` without augmentation.
    """

    def __init__(self, cfg, data_source, transform=None, is_train: bool = False) -> None:
        self.cfg = cfg
        self.data_source = data_source
        self.transform = transform
        self.is_train = is_train
        self.k_tfm = cfg.DATALOADER.K_TRANSFORMS if is_train else 1
        self.return_img0 = cfg.DATALOADER.RETURN_IMG0
        if self.k_tfm > 1 and transform is None:
            raise ValueError("Cannot augment the image {} times because transform is None".format(self.k_tfm))
        to_tensor = [T.Resize(cfg.INPUT.SIZE, interpolation=INTERPOLATION_MODES[cfg.INPUT.INTERPOLATION]),
                     T.ToTensor()]
        if "normalize" in cfg.INPUT.TRANSFORMS:
            to_tensor.append(T.Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD))
        self.to_tensor = T.Compose(to_tensor)

    def __len__(self) -> int:
        return len(self.data_source)

    def __getitem__(self, idx: int) -> dict:
        item = self.data_source[idx]
        output = {"label": item.label, "domain": item.domain, "impath": item.impath, "index": idx}
        img0 = read_image(item.impath)
        if self.transform is not None:
            if isinstance(self.transform, (list, tuple)):
                for i, tfm in enumerate(self.transform):
                    output["img" if i == 0 else f"img{i + 1}"] = self._transform_image(tfm, img0)
            else:
                output["img"] = self._transform_image(self.transform, img0)
        else:
            output["img"] = img0
        if self.return_img0:
            output["img0"] = self.to_tensor(img0)
        return output

    def _transform_image(self, tfm, img0):
        images = [tfm(img0) for _ in range(self.k_tfm)]
        return images[0] if len(images) == 1 else images


def build_data_loader(cfg, sampler_type: str = "SequentialSampler", data_source=None, batch_size: int = 64,
                      n_domain: int = 0, n_ins: int = 2, tfm=None, is_train: bool = True,
                      dataset_wrapper=None) -> torch.utils.data.DataLoader:
    """A ``DataLoader`` over ``data_source``, built as Dassl 0.6.3 builds it.

    No generator of its own: the sampler's seed and the workers' base seed come from the global torch RNG
    (seeded by ``SEED``), in the order Dassl's loader draws them, so the built-in engine and the real Dassl
    give the same batches and the same augmentations for one seed, with or without workers.

    Under ``torchrun`` with N processes, a training ``batch_size`` is the global batch: each rank loads
    ``batch_size / N`` images of each of one process's batches (:class:`GlobalBatchShard`); evaluation loaders
    give each rank every N-th image (:class:`EvalShard`) with ``batch_size`` images per batch.
    """
    if not data_source:
        raise ValueError("build_data_loader: the data source is empty (no images in this split)")
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    sampler = build_sampler(sampler_type, data_source)
    drop_last = is_train and len(data_source) >= batch_size
    world = distributed.get_world_size()
    if world > 1:  # torchrun: batch_size is the global batch (training); each rank evaluates its own images
        rank = distributed.get_rank()
        if is_train:  # GlobalBatchShard refuses a batch that does not split when training starts
            sampler = GlobalBatchShard(sampler, batch_size, world, rank)
            batch_size, drop_last = max(batch_size // world, 1), False  # the shard holds whole local batches
        else:
            sampler = EvalShard(data_source, world, rank)
    wrapper = dataset_wrapper or DatasetWrapper
    return torch.utils.data.DataLoader(
        wrapper(cfg, data_source, transform=tfm, is_train=is_train),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        drop_last=drop_last,
        pin_memory=torch.cuda.is_available() and cfg.USE_CUDA,
    )


class DataManager:
    """Builds the data set named in ``cfg`` and exposes its loaders and label names."""

    def __init__(self, cfg, custom_tfm_train=None, custom_tfm_test=None, dataset_wrapper=None) -> None:
        dataset = build_dataset(cfg)
        if custom_tfm_train is None:
            tfm_train = build_transform(cfg, is_train=True)
        else:
            print("* Using custom transform for training")
            tfm_train = custom_tfm_train
        if custom_tfm_test is None:
            tfm_test = build_transform(cfg, is_train=False)
        else:
            print("* Using custom transform for testing")
            tfm_test = custom_tfm_test

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
