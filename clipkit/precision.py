"""One optimizer step for every precision: ``fp32``, ``bf16`` (autocast) and ``amp`` (fp16 autocast + scaler)."""
from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("fp32", "bf16", "amp")
PRECISION_ALIASES = {"fp16": "amp"}  # the CoOp family's PREC "fp16" trains with fp16 autocast here


def resolve_precision(requested: str, device: torch.device) -> str:
    """``amp`` needs CUDA; on CPU it falls back to ``fp32`` (fp16 autocast on CPU is slow and unsupported)."""
    requested = PRECISION_ALIASES.get(requested, requested)
    if requested not in PRECISIONS:
        raise ValueError(f"precision {requested!r} is not one of {PRECISIONS}")
    if requested == "amp" and device.type != "cuda":
        return "fp32"
    return requested


class PrecisionStep:
    """``with step.autocast(): loss = ...``; then ``step.backward_and_update(loss, optimizer)``."""

    def __init__(self, precision: str, device: torch.device) -> None:
        self.precision = resolve_precision(precision, device)
        self.device = device
        self.scaler = torch.amp.GradScaler("cuda") if self.precision == "amp" else None

    def autocast(self):
        if self.precision == "amp":
            return torch.autocast(device_type=self.device.type, dtype=torch.float16)
        if self.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def backward_and_update(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        if not torch.isfinite(loss).all():
            raise FloatingPointError(f"Loss is {loss.item()}; stopping before the weights are corrupted")
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            loss.backward()
            optimizer.step()
