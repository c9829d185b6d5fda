"""``build_optimizer(model, optim_cfg, param_groups=None)``: sgd, adam, adamw, rmsprop."""
from __future__ import annotations

import torch
import torch.nn as nn

AVAI_OPTIMS = ("adam", "amsgrad", "sgd", "rmsprop", "adamw")


def build_optimizer(model, optim_cfg, param_groups=None) -> torch.optim.Optimizer:
    """Optimizer over ``param_groups`` when given, else over ``model``'s trainable parameters."""
    name = optim_cfg.NAME
    if name not in AVAI_OPTIMS:
        raise ValueError(f"OPTIM.NAME={name!r} is not supported; choose one of {list(AVAI_OPTIMS)}")
    if param_groups is not None and optim_cfg.STAGED_LR:
        raise ValueError("OPTIM.STAGED_LR is not supported together with param_groups")
    if param_groups is None:
        if isinstance(model, nn.Module):
            params = [p for p in model.parameters() if p.requires_grad]
        else:
            params = model
        if optim_cfg.STAGED_LR:
            raise NotImplementedError("OPTIM.STAGED_LR is not implemented in the built-in engine")
        param_groups = params
    lr, wd = optim_cfg.LR, optim_cfg.WEIGHT_DECAY
    betas = (optim_cfg.ADAM_BETA1, optim_cfg.ADAM_BETA2)
    if name == "adam":
        return torch.optim.Adam(param_groups, lr=lr, weight_decay=wd, betas=betas)
    if name == "amsgrad":
        return torch.optim.Adam(param_groups, lr=lr, weight_decay=wd, betas=betas, amsgrad=True)
    if name == "sgd":
        return torch.optim.SGD(param_groups, lr=lr, momentum=optim_cfg.MOMENTUM, weight_decay=wd,
                               dampening=optim_cfg.SGD_DAMPNING, nesterov=optim_cfg.SGD_NESTEROV)
    if name == "rmsprop":
        return torch.optim.RMSprop(param_groups, lr=lr, momentum=optim_cfg.MOMENTUM, weight_decay=wd,
                                   alpha=optim_cfg.RMSPROP_ALPHA)
    return torch.optim.AdamW(param_groups, lr=lr, weight_decay=wd, betas=betas)
