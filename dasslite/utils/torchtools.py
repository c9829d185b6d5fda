"""Checkpoint helpers with Dassl's file layout: ``<dir>/model.pth.tar-<epoch>`` plus a ``checkpoint`` pointer.

Guarantees on top of Dassl's:
- every file is written to a temporary name and renamed (:mod:`.atomic`), so ``kill -9`` at any instant
  leaves complete files only;
- loading never runs code from the file (``torch.load(weights_only=True)``): checkpoints hold tensors and
  plain data, and a file naming anything else is refused with its path;
- resuming does not trust the ``checkpoint`` pointer alone: a missing, empty or stale pointer, or a truncated
  file, falls back to the most advanced complete checkpoint of the folder (:func:`find_resume_checkpoint`).

Besides the epoch checkpoints that the protocols load, the engine keeps ``model-last.pth.tar``
(:data:`LAST_CHECKPOINT`), overwritten atomically at the end of every epoch and every
``TRAIN.LAST_CHECKPOINT_ITERS`` iterations, with what an exact resume needs (key ``"engine"``).
"""
from __future__ import annotations

import os
import os.path as osp
import pickle
import re
import warnings
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn as nn

from .atomic import atomic_copy, atomic_save, atomic_write_text
from .tools import mkdir_if_missing

POINTER = "checkpoint"
LAST_CHECKPOINT = "model-last.pth.tar"
BEST_CHECKPOINT = "model-best.pth.tar"
_EPOCH_FILE = re.compile(r"^model\.pth\.tar-(\d+)$")


class CheckpointError(ValueError):
    """A checkpoint is refused (it names code), truncated or corrupt; the message names the file and the fix."""


def save_checkpoint(state: dict, save_dir: str, is_best: bool = False, remove_module_from_keys: bool = True,
                    model_name: str = "", update_pointer: bool = True, verbose: bool = True) -> str:
    """Save ``state`` to ``save_dir/model.pth.tar-<epoch>`` (or ``model_name``) atomically; return the path.

    The ``checkpoint`` pointer names the file (as in Dassl), except for ``model-best.pth.tar``, which is not
    where training stopped, or when ``update_pointer`` is false. ``is_best`` also copies it to
    ``model-best.pth.tar``. ``verbose``: print ``Checkpoint saved to <path>`` as Dassl does.
    """
    mkdir_if_missing(save_dir)
    if remove_module_from_keys:
        state["state_dict"] = OrderedDict(
            (k[7:] if k.startswith("module.") else k, v) for k, v in state["state_dict"].items()
        )
    if not model_name:
        model_name = "model.pth.tar-" + str(state["epoch"])
    fpath = osp.join(save_dir, model_name)
    atomic_save(lambda f: torch.save(state, f), fpath)
    if verbose:
        print(f"Checkpoint saved to {fpath}")
    if update_pointer and model_name != BEST_CHECKPOINT:
        atomic_write_text(osp.join(save_dir, POINTER), f"{model_name}\n")
    if is_best:
        atomic_copy(fpath, osp.join(save_dir, BEST_CHECKPOINT))
        print(f'Best checkpoint saved to "{osp.join(save_dir, BEST_CHECKPOINT)}"')
    return fpath


def load_checkpoint(fpath: str) -> dict:
    """Load a checkpoint with ``torch.load(weights_only=True)``; errors name the file and what to do."""
    if fpath is None:
        raise ValueError("File path is None")
    if not osp.exists(fpath):
        raise FileNotFoundError(f'No checkpoint at "{fpath}"')
    try:
        return torch.load(fpath, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        if "Weights only load failed" in str(e) or found:
            what = found.group(1) if found else "a Python object"
            raise CheckpointError(
                f"{fpath}: refused to load: it holds {what}, not tensors and plain data, so unpickling it could "
                "run code. Nothing from it was run. Checkpoints written by this project and by Dassl hold plain "
                "data only; do not use a checkpoint of unknown origin."
            ) from None
        raise _corrupt(fpath, e) from None
    except (EOFError, RuntimeError, OSError, ValueError, KeyError, IndexError) as e:
        raise _corrupt(fpath, e) from None


def _corrupt(fpath: str, e: BaseException) -> CheckpointError:
    reason = str(e).split(". ")[0][:200]
    return CheckpointError(
        f"{fpath} is truncated or corrupt ({type(e).__name__}: {reason}). Delete it: training resumes from the "
        "newest complete checkpoint of the folder."
    )


@dataclass(frozen=True)
class Progress:
    """How far a checkpoint got: ``epoch`` epochs complete, then ``batch`` batches of the next epoch."""

    epoch: int
    batch: int = 0

    def __str__(self) -> str:
        return f"epoch {self.epoch}" + (f" + {self.batch} batches" if self.batch else "")


def checkpoint_progress(checkpoint: dict) -> Progress:
    engine = checkpoint.get("engine") or {}
    return Progress(int(checkpoint["epoch"]), int(engine.get("next_batch", 0)))


def epoch_checkpoints(fdir: str) -> dict[int, str]:
    """``{epoch: path}`` of the ``model.pth.tar-<epoch>`` files in ``fdir``."""
    if not osp.isdir(fdir):
        return {}
    out = {}
    for name in os.listdir(fdir):
        m = _EPOCH_FILE.match(name)
        if m:
            out[int(m.group(1))] = osp.join(fdir, name)
    return out


def _pointer_target(fdir: str) -> str | None:
    try:
        with open(osp.join(fdir, POINTER)) as f:
            name = f.readline().strip()
    except OSError:
        return None
    if not name or osp.basename(name) != name or name == BEST_CHECKPOINT:
        return None
    return osp.join(fdir, name)


def find_resume_checkpoint(fdir: str, log=print) -> tuple[str, dict] | None:
    """The most advanced complete checkpoint of ``fdir`` as ``(path, checkpoint)``; ``None`` if it has none.

    Candidates: ``model-last.pth.tar``, the file the ``checkpoint`` pointer names and every
    ``model.pth.tar-<N>``. A truncated or corrupt candidate is reported and skipped; a refused one (it names
    code) stops with :class:`CheckpointError`. Ties go to the last checkpoint (it carries the RNG states).
    """
    candidates: list[str] = []
    for path in (osp.join(fdir, LAST_CHECKPOINT), _pointer_target(fdir)):
        if path and osp.exists(path) and path not in candidates:
            candidates.append(path)
    epochs = epoch_checkpoints(fdir)
    best: tuple[str, dict] | None = None
    best_rank: tuple = ()
    problems = []

    def consider(path: str) -> None:
        nonlocal best, best_rank
        try:
            ckpt = load_checkpoint(path)
        except CheckpointError as e:
            if "refused" in str(e):
                raise
            problems.append(str(e))
            log(f"Skipping {path}: {e}")
            return
        progress = checkpoint_progress(ckpt)
        rank = (progress.epoch, progress.batch, "engine" in ckpt)
        if best is None or rank > best_rank:
            best, best_rank = (path, ckpt), rank

    for path in candidates:
        consider(path)
    for epoch in sorted(epochs, reverse=True):
        path = epochs[epoch]
        if path in candidates:
            continue
        if best is not None and (epoch, 0) <= best_rank[:2]:
            break  # no older epoch file can be more advanced
        consider(path)
    if best is None and problems:
        raise CheckpointError(
            f"{fdir} holds no complete checkpoint: " + " | ".join(problems)
            + " Delete the broken files (or the folder) to train from scratch."
        )
    return best


def resume_from_checkpoint(fdir: str, model: nn.Module, optimizer=None, scheduler=None) -> int:
    """Load the most advanced complete checkpoint of ``fdir`` into ``model`` (and optimizer, scheduler).

    Returns the number of completed epochs (the epoch to start from), as Dassl's does. Errors raised by
    ``model.load_state_dict`` (e.g. a learner refusing a checkpoint made with other settings) propagate
    unchanged. See :func:`resume_state` for the full checkpoint.
    """
    return resume_state(fdir, model, optimizer, scheduler)[0]


def resume_state(fdir: str, model: nn.Module, optimizer=None, scheduler=None) -> tuple[int, dict]:
    """Like :func:`resume_from_checkpoint`; also returns the loaded checkpoint dict."""
    found = find_resume_checkpoint(fdir)
    if found is None:
        raise FileNotFoundError(f"No checkpoint in {fdir} (expected {LAST_CHECKPOINT} or model.pth.tar-<epoch>)")
    fpath, checkpoint = found
    print(f'Loading checkpoint from "{fpath}" ({checkpoint_progress(checkpoint)})')
    model.load_state_dict(checkpoint["state_dict"])
    print("Loaded model weights")
    if optimizer is not None and checkpoint.get("optimizer") is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
        print("Loaded optimizer")
    if scheduler is not None and checkpoint.get("scheduler") is not None:
        scheduler.load_state_dict(checkpoint["scheduler"])
        print("Loaded scheduler")
    start_epoch = checkpoint["epoch"]
    print(f"Previous epoch: {start_epoch}")
    return start_epoch, checkpoint


def load_pretrained_weights(model: nn.Module, weight_path: str) -> None:
    checkpoint = load_checkpoint(weight_path)
    state_dict = checkpoint.get("state_dict", checkpoint)
    model_dict = model.state_dict()
    matched = OrderedDict()
    for k, v in state_dict.items():
        k = k[7:] if k.startswith("module.") else k
        if k in model_dict and model_dict[k].size() == v.size():
            matched[k] = v
    model_dict.update(matched)
    model.load_state_dict(model_dict)
    if not matched:
        warnings.warn(f'Cannot load "{weight_path}" (check the key names manually)', stacklevel=2)


def count_num_param(model: nn.Module | None = None, params=None) -> int:
    if model is not None:
        return sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in params)


def tolist_if_not(x):
    return x if isinstance(x, list) else [x]
