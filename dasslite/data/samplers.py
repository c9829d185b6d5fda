"""Samplers that draw their randomness exactly as Dassl 0.6.3's do, and can resume in the middle of an epoch.

Dassl builds ``torch.utils.data.RandomSampler(data_source)`` without a generator: each time an epoch starts,
its first ``next()`` draws one 64-bit seed from the *global* torch RNG and shuffles with a private generator
seeded with it. :class:`RandomSampler` does the same draw (so one ``SEED`` gives the same batches on both
engines), remembers the seed (:attr:`RandomSampler.epoch_seed`), and :meth:`RandomSampler.resume_at` replays
the rest of a permutation from a saved seed without touching the global RNG.

Under ``torchrun`` (several processes, :mod:`dasslite.distributed`) the training loader takes a
:class:`GlobalBatchShard` of the same sampler and the evaluation loaders an :class:`EvalShard`; one process
never uses either, so its batches stay Dassl's.
"""
from __future__ import annotations

from collections.abc import Iterator, Sized

import torch
from torch.utils.data import Sampler


class RandomSampler(Sampler[int]):
    """A random permutation per epoch, seeded from the global torch RNG as ``torch``'s own sampler does."""

    def __init__(self, data_source: Sized) -> None:
        self.data_source = data_source
        self.epoch_seed: int | None = None  # the seed of the permutation being iterated
        self._resume: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.data_source)

    def resume_at(self, seed: int, start: int) -> None:
        """The next iteration replays the permutation of ``seed`` from position ``start``, drawing nothing."""
        self._resume = (int(seed), int(start))

    def __iter__(self) -> Iterator[int]:
        # A generator: like torch's sampler, nothing is drawn until the loader asks for the first index.
        n = len(self.data_source)
        if self._resume is not None:
            seed, start = self._resume
            self._resume = None
        else:
            seed = int(torch.empty((), dtype=torch.int64).random_().item())
            start = 0
        self.epoch_seed = seed
        generator = torch.Generator()
        generator.manual_seed(seed)
        yield from torch.randperm(n, generator=generator).tolist()[start:]


class SequentialSampler(Sampler[int]):
    """``0, 1, ..., n - 1``; :meth:`resume_at` starts from a later position."""

    def __init__(self, data_source: Sized) -> None:
        self.data_source = data_source
        self.epoch_seed: int | None = None
        self._start = 0

    def __len__(self) -> int:
        return len(self.data_source)

    def resume_at(self, seed: int | None, start: int) -> None:  # noqa: ARG002 (same signature as RandomSampler)
        self._start = int(start)

    def __iter__(self) -> Iterator[int]:
        start, self._start = self._start, 0
        yield from range(start, len(self.data_source))


def shard_global_batches(order: list[int], global_batch: int, world_size: int, rank: int) -> list[int]:
    """Rank ``rank``'s part of every global batch of ``order``.

    The global batches are those one process would form with ``global_batch`` and Dassl's ``drop_last``
    (full batches only, unless the whole epoch is shorter than one batch, which is then one batch):
    ``order[j*B:(j+1)*B]``. Each is split into ``world_size`` consecutive slices of ``B / world_size``, so
    the ranks' local batches ``j`` together hold exactly the samples of one process's batch ``j``.
    """
    n = len(order)
    if n >= global_batch:
        n_batches, size = n // global_batch, global_batch
    else:
        n_batches, size = 1, n
    local = size // world_size
    out: list[int] = []
    for j in range(n_batches):
        start = j * size + rank * local
        out.extend(order[start:start + local])
    return out


class GlobalBatchShard(Sampler[int]):
    """One rank's share of a training sampler's epoch: see :func:`shard_global_batches`.

    The epoch's order is ``base``'s: for :class:`RandomSampler` every rank draws a seed from its own global
    torch RNG, as one process does, and uses rank 0's (broadcast), so all ranks shard the same permutation.
    ``resume_at(seed, start)`` replays that permutation from this rank's ``start``-th index, drawing nothing.
    """

    def __init__(self, base: Sampler[int], global_batch: int, world_size: int, rank: int) -> None:
        self.base = base
        self.global_batch, self.world_size, self.rank = global_batch, world_size, rank
        self.epoch_seed: int | None = None
        self._resume: tuple[int | None, int] | None = None

    def __len__(self) -> int:
        n = len(self.base)
        return (n // self.global_batch) * (self.global_batch // self.world_size) if n >= self.global_batch \
            else n // self.world_size

    def resume_at(self, seed: int | None, start: int) -> None:
        self._resume = (seed, int(start))

    def check(self) -> None:
        """Refuse what cannot split evenly (checked when training starts: an evaluation-only run never iterates)."""
        from ..config import ConfigValueError
        from ..distributed import check_global_batch

        check_global_batch(self.global_batch, self.world_size)
        n = len(self.base)
        if n < self.global_batch and n % self.world_size:
            raise ConfigValueError(
                f"the training set has {n} images, fewer than the global batch DATALOADER.TRAIN_X.BATCH_SIZE="
                f"{self.global_batch}: one process trains on one batch of all {n}, which {self.world_size} "
                "processes cannot split evenly; run this one in a single process (plain python, or torchrun "
                "--nproc_per_node 1)"
            )

    def __iter__(self) -> Iterator[int]:
        from ..distributed import broadcast

        self.check()
        start = 0
        if self._resume is not None:
            seed, start = self._resume
            self._resume = None
            if seed is not None:
                self.base.resume_at(seed, 0)
        elif isinstance(self.base, RandomSampler):
            seed = int(torch.empty((), dtype=torch.int64).random_().item())  # each rank draws, as one process does
            self.base.resume_at(broadcast(seed), 0)  # and all use rank 0's
        order = list(self.base)
        self.epoch_seed = getattr(self.base, "epoch_seed", None)
        yield from shard_global_batches(order, self.global_batch, self.world_size, self.rank)[start:]


class EvalShard(Sampler[int]):
    """Evaluation on several processes: rank ``r`` takes images ``r, r + N, r + 2N, ...`` of the split, so every
    image is scored exactly once (no padding, unlike ``DistributedSampler``); the evaluator gathers the results."""

    def __init__(self, data_source: Sized, world_size: int, rank: int) -> None:
        self.data_source = data_source
        self.world_size, self.rank = world_size, rank

    def __len__(self) -> int:
        return len(range(self.rank, len(self.data_source), self.world_size))

    def __iter__(self) -> Iterator[int]:
        yield from range(self.rank, len(self.data_source), self.world_size)


SAMPLERS = {"RandomSampler": RandomSampler, "SequentialSampler": SequentialSampler}


def build_sampler(sampler_type: str, data_source: Sized) -> Sampler[int]:
    """The sampler named ``sampler_type``; unknown names list the supported ones."""
    if sampler_type not in SAMPLERS:
        raise ValueError(
            f"Sampler {sampler_type!r} is not supported by the built-in engine; use one of {list(SAMPLERS)} "
            "(Dassl.pytorch also has RandomDomainSampler, SeqDomainSampler and RandomClassSampler)"
        )
    return SAMPLERS[sampler_type](data_source)
