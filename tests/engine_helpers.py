"""A tiny trainer for engine tests, independent of trainers/: a linear probe on pooled pixels.

It trains in a second per epoch on CPU, draws from the global RNG in every step (dropout), and can record
what it trained on (``TINY_TRACE=<file.json>``: per batch the sample indices and per-image statistics, plus
the final weights and test accuracy). It imports only ``dassl.*``, so it runs on the built-in engine and on
the real Dassl.pytorch alike (see tests/make_dassl_trace.py).
"""
from __future__ import annotations

import json
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from dassl.engine import TRAINER_REGISTRY, TrainerX
from dassl.optim import build_lr_scheduler, build_optimizer

from tools.fake_data import make_split_dataset


class PooledLinear(nn.Module):
    """``[B, 3, H, W]`` -> 4x4 average pool -> dropout -> linear -> ``[B, C]``."""

    def __init__(self, n_classes: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(48, n_classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.pool(image).flatten(1)))


def image_stats(images: torch.Tensor) -> list[list[float]]:
    """Per image: the mean of each channel and the overall std, rounded (a digest robust to float noise)."""
    means = images.mean(dim=(2, 3))
    stds = images.flatten(1).std(dim=1, keepdim=True)
    return [[round(v, 5) for v in row] for row in torch.cat([means, stds], dim=1).tolist()]


if "TinyProbe" not in TRAINER_REGISTRY.registered_names():

    @TRAINER_REGISTRY.register()
    class TinyProbe(TrainerX):
        """Linear probe trained with ``OPTIM``; registers one model, ``probe``."""

        def build_model(self) -> None:
            self.model = PooledLinear(self.num_classes).to(self.device)
            self.optim = build_optimizer(self.model, self.cfg.OPTIM)
            self.sched = build_lr_scheduler(self.optim, self.cfg.OPTIM)
            self.register_model("probe", self.model, self.optim, self.sched)
            self.trace: list[dict] = []

        def forward_backward(self, batch) -> dict[str, float]:
            image, label = batch["img"].to(self.device), batch["label"].to(self.device)
            loss = F.cross_entropy(self.model(image), label)
            self.model_backward_and_update(loss)
            if os.environ.get("TINY_TRACE"):
                self.trace.append({"epoch": self.epoch, "batch": self.batch_idx, "index": batch["index"].tolist(),
                                   "stats": image_stats(image)})
            if (self.batch_idx + 1) == self.num_batches:
                self.update_lr()
            return {"loss": loss.item()}

        def parse_batch_train(self, batch):
            return batch["img"].to(self.device), batch["label"].to(self.device)

        def after_train(self) -> None:
            super().after_train()
            path = os.environ.get("TINY_TRACE")
            if path:
                result = self.test()
                with open(path, "w") as f:
                    json.dump({"batches": self.trace, "accuracy": result,
                               "weight": self.model.fc.weight.detach().flatten().tolist(),
                               "bias": self.model.fc.bias.detach().tolist()}, f)


def make_parity_data(root: str) -> str:
    """The fake DTD tree of the parity runs: 4 classes, 10 train / 2 val / 3 test images each."""
    return make_split_dataset(root, "DescribableTextures", n_classes=4, per_split=(10, 2, 3))


def tiny_args(data: str, out: str, *extra: str, epochs: int = 3, workers: int = 0) -> list[str]:
    """train.py arguments of a TinyProbe run on the parity data (8 shots, batch 4: 8 batches per epoch)."""
    return [
        "--root", data, "--trainer", "TinyProbe", "--dataset-config-file", "configs/datasets/dtd.yaml",
        "--output-dir", out, "--seed", "1",
        "DATASET.NUM_SHOTS", "8", "INPUT.SIZE", "(16, 16)",
        "INPUT.TRANSFORMS", "('random_resized_crop', 'random_flip', 'normalize')",
        "DATALOADER.NUM_WORKERS", str(workers), "DATALOADER.TRAIN_X.BATCH_SIZE", "4",
        "DATALOADER.TEST.BATCH_SIZE", "8", "OPTIM.NAME", "sgd", "OPTIM.LR", "0.05",
        "OPTIM.LR_SCHEDULER", "cosine", "OPTIM.MAX_EPOCH", str(epochs), "TEST.FINAL_MODEL", "best_val",
        "TRAIN.PRINT_FREQ", "100", "USE_CUDA", "False", *extra,
    ]
