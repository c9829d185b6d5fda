"""Timing helpers shared by the benchmark scripts: warm-up, median wall time, peak memory."""
from __future__ import annotations

import resource
import statistics
import time
from typing import Callable

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Wall seconds of one call, the device synchronised before and after."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def measure(fn: Callable[[], object], device: torch.device, reps: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds per call and peak memory (CUDA: allocated bytes; CPU: process max RSS) in MiB."""
    for _ in range(warmup):
        fn()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = [timed(fn, device) for _ in range(reps)]
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else peak_rss_mib()
    return {"seconds": statistics.median(times), "peak_mib": peak}


def peak_rss_mib() -> float:
    """This process's peak resident memory. Linux's ``VmHWM`` belongs to the process image; ``ru_maxrss``
    (the fallback elsewhere) survives fork + exec, so a child would report its parent's peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def interleaved(fns: dict[str, Callable[[], object]], device: torch.device, rounds: int) -> dict[str, float]:
    """Median seconds per call of each function, timed in alternating rounds (one warm-up call each).

    On a shared machine whose speed drifts, alternating keeps the drift out of the ratios between them.
    """
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name].append(timed(fn, device))
    return {name: statistics.median(t) for name, t in times.items()}
