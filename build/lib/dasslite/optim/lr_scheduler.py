"""Per-epoch schedulers: ``cosine``, ``single_step``, ``multi_step``, with optional constant/linear warm-up.

As in Dassl, a warm-up wraps the main scheduler: during the first ``WARMUP_EPOCH`` epochs the learning
rate is ``WARMUP_CONS_LR`` (constant) or ramps from ``WARMUP_MIN_LR`` (linear); the main schedule then
starts from epoch 0 when ``WARMUP_RECOUNT`` is true.
"""
from __future__ import annotations

import torch
from torch.optim.lr_scheduler import LRScheduler

AVAI_SCHEDS = ("single_step", "multi_step", "cosine")


class _BaseWarmupScheduler(LRScheduler):
    def __init__(self, optimizer, successor: LRScheduler, warmup_epoch: int, last_epoch: int = -1) -> None:
        self.successor = successor
        self.warmup_epoch = warmup_epoch
        super().__init__(optimizer, last_epoch)

    def state_dict(self) -> dict:
        """Plain data only (the successor as its own state dict), so ``torch.load(weights_only=True)`` works."""
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "successor")}
        state["successor_state"] = self.successor.state_dict()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state = dict(state_dict)
        self.successor.load_state_dict(state.pop("successor_state"))
        self.__dict__.update(state)

    def step(self, epoch=None):  # noqa: D102
        if self.last_epoch >= self.warmup_epoch:
            self.successor.step(epoch)
            self._last_lr = self.successor.get_last_lr()
        else:
            super().step(epoch)


class ConstantWarmupScheduler(_BaseWarmupScheduler):
    """Holds ``cons_lr`` for ``warmup_epoch`` epochs, then hands over to ``successor``."""

    def __init__(self, optimizer, successor, warmup_epoch: int, cons_lr: float, last_epoch: int = -1) -> None:
        self.cons_lr = cons_lr
        super().__init__(optimizer, successor, warmup_epoch, last_epoch)

    def get_lr(self):  # noqa: D102
        if self.last_epoch >= self.warmup_epoch:
            return self.successor.get_last_lr()
        return [self.cons_lr for _ in self.base_lrs]


class LinearWarmupScheduler(_BaseWarmupScheduler):
    """Ramps linearly from ``min_lr`` to the base rate over ``warmup_epoch`` epochs."""

    def __init__(self, optimizer, successor, warmup_epoch: int, min_lr: float, last_epoch: int = -1) -> None:
        self.min_lr = min_lr
        super().__init__(optimizer, successor, warmup_epoch, last_epoch)

    def get_lr(self):  # noqa: D102
        if self.last_epoch >= self.warmup_epoch:
            return self.successor.get_last_lr()
        if self.last_epoch == 0:
            return [self.min_lr for _ in self.base_lrs]
        return [lr * self.last_epoch / self.warmup_epoch for lr in self.base_lrs]


def build_lr_scheduler(optimizer: torch.optim.Optimizer, optim_cfg) -> LRScheduler:
    name = optim_cfg.LR_SCHEDULER
    if name not in AVAI_SCHEDS:
        raise ValueError(f"OPTIM.LR_SCHEDULER={name!r} is not supported; choose one of {list(AVAI_SCHEDS)}")
    stepsize = optim_cfg.STEPSIZE
    max_epoch = optim_cfg.MAX_EPOCH
    if name == "single_step":
        step = stepsize[-1] if isinstance(stepsize, (list, tuple)) else stepsize
        if step <= 0:
            step = max_epoch
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=step, gamma=optim_cfg.GAMMA)
    elif name == "multi_step":
        if not isinstance(stepsize, (list, tuple)):
            raise TypeError("OPTIM.STEPSIZE must be a list for multi_step")
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(stepsize),
                                                         gamma=optim_cfg.GAMMA)
    else:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=float(max_epoch))

    if optim_cfg.WARMUP_EPOCH > 0:
        if not optim_cfg.WARMUP_RECOUNT:
            scheduler.last_epoch = optim_cfg.WARMUP_EPOCH
        if optim_cfg.WARMUP_TYPE == "constant":
            scheduler = ConstantWarmupScheduler(optimizer, scheduler, optim_cfg.WARMUP_EPOCH,
                                                optim_cfg.WARMUP_CONS_LR)
        elif optim_cfg.WARMUP_TYPE == "linear":
            scheduler = LinearWarmupScheduler(optimizer, scheduler, optim_cfg.WARMUP_EPOCH,
                                              optim_cfg.WARMUP_MIN_LR)
        else:
            raise ValueError(f"OPTIM.WARMUP_TYPE={optim_cfg.WARMUP_TYPE!r}; choose constant or linear")
    return scheduler
