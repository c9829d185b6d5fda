"""One run on several processes (``torchrun``): the process group, per-rank seeds, and the few collectives the
engine needs.

Without ``torchrun`` (``WORLD_SIZE`` unset or 1) nothing here starts a process group and every helper is the
identity: a single process runs exactly the code it ran before this module existed.

What ranks share and what they do not (documented in the README's "Scaling out"):

- **shared**: the config; every RNG up to the end of ``build_model`` (all ranks are seeded with ``SEED``, so
  data sets, few-shot subsets and models are built identically; DDP also broadcasts rank 0's learner);
  the permutation of every epoch (rank 0 draws its seed from its global torch RNG exactly as one process
  does, and broadcasts it); the learnable weights (DDP averages gradients every step).
- **per rank**: once the model is built, rank ``r > 0`` reseeds Python, NumPy and torch (CPU and CUDA) with
  :func:`rank_seed` ``(SEED, r)``; augmentations, dropout and DataLoader worker seeds then differ per rank.
  Rank 0 keeps the single-process stream.
"""
from __future__ import annotations

import contextlib
import datetime
import inspect
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in a ``torchrun`` launch."""

    rank: int
    local_rank: int
    world_size: int
    backend: str


def env_world_size() -> int:
    """``WORLD_SIZE`` as ``torchrun`` sets it; 1 without ``torchrun``."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def env_rank() -> int:
    """``RANK`` as ``torchrun`` sets it; 0 without ``torchrun`` (usable before the process group exists)."""
    return int(os.environ.get("RANK", "0") or 0)


def init_from_env(use_cuda: bool = True, timeout_min: float = 30.0) -> DistInfo | None:
    """Start the process group from ``torchrun``'s environment when ``WORLD_SIZE`` > 1; ``None`` otherwise.

    Backend: ``nccl`` when CUDA is available and ``use_cuda`` (each process then works on ``cuda:LOCAL_RANK``),
    else ``gloo`` (CPU). Idempotent: a group that already exists is reused.
    """
    world = env_world_size()
    if world <= 1:
        return None
    local_rank = int(os.environ.get("LOCAL_RANK", "0") or 0)
    cuda = use_cuda and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(minutes=timeout_min))
    return DistInfo(rank=dist.get_rank(), local_rank=local_rank, world_size=dist.get_world_size(),
                    backend=str(dist.get_backend()))


def shutdown() -> None:
    """Destroy the process group if this process started one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    """True inside a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def get_backend_name() -> str:
    return str(dist.get_backend()) if is_distributed() else "none"


def is_main_process() -> bool:
    """Rank 0, the only process that writes logs, checkpoints, config.yaml, tensorboard and the lock."""
    return get_rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """Rank 0 runs the block first (writing caches and downloads), then the other ranks (reading them)."""
    if not is_distributed():
        yield
        return
    if get_rank() > 0:
        dist.barrier()
    try:
        yield
    finally:
        if get_rank() == 0:
            dist.barrier()


def broadcast(value: Any) -> Any:
    """Rank 0's ``value`` (a small picklable object) on every rank."""
    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather(value: Any) -> list[Any]:
    """Every rank's ``value`` (picklable), indexed by rank, on every rank."""
    if not is_distributed():
        return [value]
    out: list[Any] = [None] * get_world_size()
    dist.all_gather_object(out, value)
    return out


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """The mean of each number over ranks (every rank passes the same keys): logged losses and accuracies of
    equal local batches are then those of the global batch."""
    if not is_distributed() or not values:
        return values
    keys = list(values)  # the same trainer on every rank: same keys, same order
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    t /= get_world_size()
    return {k: float(v) for k, v in zip(keys, t.tolist())}


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank`` in a run seeded with ``seed``: ``seed`` itself on rank 0, else the first 32-bit
    word of ``numpy.random.SeedSequence([seed, rank])`` (well mixed, so rank 1 of seed 1 is not rank 0 of seed 2)."""
    if rank == 0:
        return seed
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


def check_global_batch(batch_size: int, world_size: int) -> None:
    """``DATALOADER.TRAIN_X.BATCH_SIZE`` is the global batch: it must split evenly over the processes."""
    if world_size > 1 and batch_size % world_size:
        from .config import ConfigValueError

        lower, upper = batch_size // world_size * world_size, (batch_size // world_size + 1) * world_size
        raise ConfigValueError(
            f"DATALOADER.TRAIN_X.BATCH_SIZE={batch_size} is the global batch and cannot be split evenly over "
            f"{world_size} processes: set it to a multiple of {world_size} (e.g. {lower or upper} or {upper}), "
            f"or launch a number of processes that divides {batch_size}"
        )


def wrap_ddp(module: torch.nn.Module, device: torch.device) -> torch.nn.parallel.DistributedDataParallel:
    """``DistributedDataParallel(module)`` for this process's device. Buffers are not broadcast on every forward
    (a learner's buffers are constants, and evaluation, where ranks run different numbers of batches, must not
    need a collective); parameters are broadcast from rank 0 once, here."""
    device_ids = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else None
    ddp = torch.nn.parallel.DistributedDataParallel
    no_buffer_sync = {"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(ddp).parameters \
        else {"broadcast_buffers": False}  # the older name (deprecated in recent PyTorch)
    return ddp(module, device_ids=device_ids, **no_buffer_sync)
