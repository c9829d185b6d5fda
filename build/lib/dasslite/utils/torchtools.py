"""Checkpoint helpers with Dassl's file layout: ``<dir>/model.pth.tar-<epoch>`` plus a ``checkpoint`` file."""
from __future__ import annotations

import os
import os.path as osp
import shutil
import warnings
from collections import OrderedDict

import torch
import torch.nn as nn

from .tools import mkdir_if_missing


def save_checkpoint(state: dict, save_dir: str, is_best: bool = False, remove_module_from_keys: bool = True,
                    model_name: str = "") -> str:
    """Save ``state`` to ``save_dir/model.pth.tar-<epoch>`` atomically; return the path."""
    mkdir_if_missing(save_dir)
    if remove_module_from_keys:
        state["state_dict"] = OrderedDict(
            (k[7:] if k.startswith("module.") else k, v) for k, v in state["state_dict"].items()
        )
    epoch = state["epoch"]
    if not model_name:
        model_name = "model.pth.tar-" + str(epoch)
    fpath = osp.join(save_dir, model_name)
    tmp = fpath + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, fpath)  # a crash mid-save never leaves a truncated checkpoint
    with open(osp.join(save_dir, "checkpoint"), "w") as f:
        f.write(f"{osp.basename(fpath)}\n")
    if is_best:
        shutil.copy(fpath, osp.join(osp.dirname(fpath), "model-best.pth.tar"))
    return fpath


def load_checkpoint(fpath: str) -> dict:
    if fpath is None:
        raise ValueError("File path is None")
    if not osp.exists(fpath):
        raise FileNotFoundError(f'No checkpoint at "{fpath}"')
    return torch.load(fpath, map_location="cpu", weights_only=False)


def resume_from_checkpoint(fdir: str, model: nn.Module, optimizer=None, scheduler=None) -> int:
    with open(osp.join(fdir, "checkpoint")) as f:
        model_name = f.readlines()[0].strip("\n")
    fpath = osp.join(fdir, model_name)
    print(f'Loading checkpoint from "{fpath}"')
    checkpoint = load_checkpoint(fpath)
    model.load_state_dict(checkpoint["state_dict"])
    print("Loaded model weights")
    if optimizer is not None and "optimizer" in checkpoint:
        optimizer.load_state_dict(checkpoint["optimizer"])
        print("Loaded optimizer")
    if scheduler is not None and "scheduler" in checkpoint:
        scheduler.load_state_dict(checkpoint["scheduler"])
        print("Loaded scheduler")
    start_epoch = checkpoint["epoch"]
    print(f"Previous epoch: {start_epoch}")
    return start_epoch


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
