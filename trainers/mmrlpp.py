"""MMRL++ (Guo & Gu): MMRL with parameter-efficient, layer-coupled maps into the towers.

Differences from MMRL (``trainers/mmrl.py``, whose model, losses and inference it reuses): the maps of the
shared tokens into each tower share one weight ``W`` and add a per-layer low-rank residual ``A_l B_l`` (and
bias) — "shared-residual representation aligners"; after the first listed layer the new tokens are anchored
to the previous layer's outputs, ``BETA * new + (1 - BETA) * previous`` (as DeAR's tokens); and ``f_rep``
projects with CLIP's frozen projection plus a low-rank residual ``A B`` instead of a free matrix.
Official keys ``TRAINER.MMRLpp.*``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F
from dassl.engine import TRAINER_REGISTRY

from clipkit.config import key, prec_key, register_settings
from clipkit.prompted import Learner

from .mmrl import MMRL, MMRLModel, MMRLSettings


@register_settings
@dataclass(frozen=True)
class MMRLppSettings(MMRLSettings):
    NODE: ClassVar[str] = "MMRLpp"
    BETA: float = key(0.9, "anchoring of the tokens after the first listed layer: BETA * new + (1 - BETA) * previous"
                           " (not part of the learner's identity: the official cross-data tests change it per target)",
                      check=lambda v: 0.0 <= v <= 1.0, rule="in [0, 1]")
    PROJ_LORA_DIM: int = key(64, "rank of the residual on CLIP's projection for the representation features",
                             check=lambda v: v > 0, rule="> 0", identity=True)
    RES_LORA_DIM: int = key(4, "rank of each layer's residual on the shared token maps", check=lambda v: v > 0,
                            rule="> 0", identity=True)
    PREC: str = prec_key("amp")

    @classmethod
    def dataset_overrides(cls, dataset: str, task: str) -> dict:
        """The official per-data-set values (MMRL++'s ``trainers/config.py``): by TASK."""
        row = (MMRLPP_CD_TABLE if task == "CD" else MMRLPP_TABLE).get(dataset, {})
        return {f"TRAINER.{cls.NODE}.{k}": v for k, v in row.items()}


# The official repository's per-data-set values (yunncheng/MMRL trainers/config.py, MMRLpp branch).
MMRLPP_TABLE: dict[str, dict] = {  # base-to-novel and few-shot
    "ImageNet": {"BETA": 0.9, "REG_WEIGHT": 0.2}, "FGVCAircraft": {"BETA": 0.9, "REG_WEIGHT": 2.0},
    "UCF101": {"BETA": 0.9, "REG_WEIGHT": 3.0}, "DescribableTextures": {"BETA": 0.9, "REG_WEIGHT": 7.0},
    "OxfordPets": {"BETA": 0.7, "REG_WEIGHT": 0.01}, "StanfordCars": {"BETA": 0.7, "REG_WEIGHT": 6.0},
    "Caltech101": {"BETA": 0.6, "REG_WEIGHT": 3.0}, "SUN397": {"BETA": 0.5, "REG_WEIGHT": 3.0},
    "OxfordFlowers": {"BETA": 0.4, "REG_WEIGHT": 7.0}, "EuroSAT": {"BETA": 0.2, "REG_WEIGHT": 0.01},
    "Food101": {"BETA": 0.1, "REG_WEIGHT": 1.0},
}
MMRLPP_CD_TABLE: dict[str, dict] = {  # cross-data: training on ImageNet, then BETA per target
    "ImageNet": {"BETA": 0.9, "REG_WEIGHT": 0.1}, "ImageNetV2": {"BETA": 0.9}, "ImageNetR": {"BETA": 0.9},
    "ImageNetA": {"BETA": 0.8}, "ImageNetSketch": {"BETA": 0.7}, "FGVCAircraft": {"BETA": 0.9},
    "UCF101": {"BETA": 0.9}, "SUN397": {"BETA": 0.7}, "OxfordPets": {"BETA": 0.6}, "Caltech101": {"BETA": 0.6},
    "DescribableTextures": {"BETA": 0.5}, "OxfordFlowers": {"BETA": 0.4}, "StanfordCars": {"BETA": 0.3},
    "EuroSAT": {"BETA": 0.3}, "Food101": {"BETA": 0.3},
}


def _low_rank(rows: int, rank: int, cols: int) -> tuple[nn.Parameter, nn.Parameter]:
    """``A [rows, rank]`` (Kaiming-uniform, as a LoRA down-projection) and ``B [rank, cols]`` (zeros)."""
    a = nn.Parameter(torch.zeros(rows, rank))
    nn.init.kaiming_uniform_(a, a=math.sqrt(5))
    return a, nn.Parameter(torch.zeros(rank, cols))


class SharedResidualMaps(nn.Module):
    """``n`` linear maps ``x -> x (W + A_l B_l)^T + b_l`` sharing ``W`` (initialised from ``base``)."""

    def __init__(self, base: nn.Linear, n: int, rank: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(base.weight.detach().clone())
        self.srra = nn.ModuleList()
        for _ in range(n):
            layer = nn.Module()
            layer.A, layer.B = _low_rank(base.weight.shape[0], rank, base.weight.shape[1])
            layer.bias = nn.Parameter(base.bias.detach().clone())
            self.srra.append(layer)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [F.linear(x, self.weight + layer.A @ layer.B, layer.bias) for layer in self.srra]


class MMRLppLearner(Learner):
    def __init__(self, identity: dict, s: MMRLppSettings, clip_model) -> None:
        super().__init__(identity)
        width, text_width = clip_model.visual.transformer.width, clip_model.transformer.width
        self.A, self.B = _low_rank(width, s.PROJ_LORA_DIM, int(clip_model.visual.proj.shape[1]))
        self.register_buffer("proj", clip_model.visual.proj.detach(), persistent=False)  # CLIP's, frozen
        self.compound_rep_tokens = nn.Parameter(torch.empty(s.N_REP_TOKENS, s.REP_DIM))
        nn.init.normal_(self.compound_rep_tokens, std=0.02)
        r2v, r2t = nn.Linear(s.REP_DIM, width), nn.Linear(s.REP_DIM, text_width)
        self.srra_r2vproj = SharedResidualMaps(r2v, len(s.REP_LAYERS), s.RES_LORA_DIM)
        self.srra_r2tproj = SharedResidualMaps(r2t, len(s.REP_LAYERS), s.RES_LORA_DIM)

    def forward(self) -> dict:
        r = self.compound_rep_tokens
        return {"vision": self.srra_r2vproj(r), "text": self.srra_r2tproj(r), "proj_rep": self.proj + self.A @ self.B}


@TRAINER_REGISTRY.register()
class MMRLpp(MMRL):
    Settings = MMRLppSettings

    @classmethod
    def make_model(cls, cfg, clip_model, settings=None, classnames=None) -> MMRLModel:
        s = settings or cls.Settings.from_cfg(cfg)
        return MMRLModel(clip_model, s, MMRLppLearner, "MMRLpp", beta=s.BETA, backbone=cfg.MODEL.BACKBONE.NAME)
