"""Samplers that draw their randomness exactly as Dassl 0.6.3's do, and can resume in the middle of an epoch.

Dassl builds ``torch.utils.data.RandomSampler(data_source)`` without a generator: each time an epoch starts,
its first ``next()`` draws one 64-bit seed from the *global* torch RNG and shuffles with a private generator
seeded with it. :class:`RandomSampler` does the same draw (so one ``SEED`` gives the same batches on both
engines), remembers the seed (:attr:`RandomSampler.epoch_seed`), and :meth:`RandomSampler.resume_at` replays
the rest of a permutation from a saved seed without touching the global RNG.
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


SAMPLERS = {"RandomSampler": RandomSampler, "SequentialSampler": SequentialSampler}


def build_sampler(sampler_type: str, data_source: Sized) -> Sampler[int]:
    """The sampler named ``sampler_type``; unknown names list the supported ones."""
    if sampler_type not in SAMPLERS:
        raise ValueError(
            f"Sampler {sampler_type!r} is not supported by the built-in engine; use one of {list(SAMPLERS)} "
            "(Dassl.pytorch also has RandomDomainSampler, SeqDomainSampler and RandomClassSampler)"
        )
    return SAMPLERS[sampler_type](data_source)
