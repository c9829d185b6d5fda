"""MaPLe (Khattak et al., CVPR 2023): deep text prompts, and vision prompts that are projections of them.

Layer 0: text context ``ctx [n, Dt]`` (from ``CTX_INIT``), vision prompt ``proj(ctx)``; layers ``1 .. J-1``
(``J = PROMPT_DEPTH``): text prompts ``P_i`` and vision prompts ``F_i(P_i)``, each ``F_i`` a linear map
(all initialised alike, as the official deep copies of one layer). Tokens enter as in IVLP
(``clipkit.deep_prompts``). Loss: cross-entropy. Official keys ``TRAINER.MAPLE.N_CTX / CTX_INIT / PREC /
PROMPT_DEPTH``.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn
from dassl.engine import TRAINER_REGISTRY

from clipkit.config import ConfigError, key, prec_key, register_settings
from clipkit.deep_prompts import DeepPromptCLIP
from clipkit.prompted import Learner
from clipkit.routing import RoleRouting
from clipkit.trainer import PromptTrainer

from .ivlp import normal_prompts, vl_model


@register_settings
@dataclass(frozen=True)
class MaPLeSettings(RoleRouting):
    NODE: ClassVar[str] = "MAPLE"
    N_CTX: int = key(2, "prompt tokens per layer (text and vision)", check=lambda v: v > 0, rule="> 0",
                     identity=True)
    CTX_INIT: str = key("a photo of a", "initial words of the layer-0 text context (used when N_CTX <= 4)",
                        identity=True)
    PREC: str = prec_key("amp")
    PROMPT_DEPTH: int = key(9, "layers with prompts in both towers (1: input only)", check=lambda v: v >= 1,
                            rule=">= 1", identity=True)

    # the names the shared deep-prompt entry reads
    @property
    def N_CTX_TEXT(self) -> int:
        return self.N_CTX

    @property
    def N_CTX_VISION(self) -> int:
        return self.N_CTX

    @property
    def PROMPT_DEPTH_TEXT(self) -> int:
        return self.PROMPT_DEPTH

    @property
    def PROMPT_DEPTH_VISION(self) -> int:
        return self.PROMPT_DEPTH


class MaPLeLearner(Learner):
    """``ctx``, ``proj`` (layer-0 coupling), deep text prompts and their projections to the vision tower."""

    def __init__(self, identity: dict, text_ctx: torch.Tensor, s: MaPLeSettings, text_width: int,
                 vision_width: int) -> None:
        super().__init__(identity)
        if not vision_width:
            raise ConfigError("MaPLe couples text prompts to a ViT image encoder; a ResNet has no tokens to prompt")
        self.proj = nn.Linear(text_width, vision_width)
        self.ctx = nn.Parameter(text_ctx)
        self.compound_prompts_text = normal_prompts(s.PROMPT_DEPTH - 1, s.N_CTX, text_width)
        single = nn.Linear(text_width, vision_width)
        self.compound_prompt_projections = nn.ModuleList([copy.deepcopy(single) for _ in range(s.PROMPT_DEPTH - 1)])

    def forward(self) -> dict[str, list[torch.Tensor]]:
        deep = list(self.compound_prompts_text)
        vision = [self.proj(self.ctx)] + [f(p) for f, p in zip(self.compound_prompt_projections, deep)]
        return {"text": [self.ctx, *deep], "vision": vision}


@TRAINER_REGISTRY.register()
class MaPLe(PromptTrainer):
    Settings = MaPLeSettings

    @classmethod
    def make_model(cls, cfg, clip_model, settings=None, classnames=None) -> DeepPromptCLIP:
        return vl_model(clip_model, MaPLeLearner, settings or cls.Settings.from_cfg(cfg), "MaPLe",
                        cfg.MODEL.BACKBONE.NAME)
