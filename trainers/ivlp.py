"""IVLP (independent vision-language prompting, Khattak et al., CVPR 2023 baseline): deep prompts in both
towers, learnt independently.

Text: ``N_CTX_TEXT`` context vectors (from ``CTX_INIT`` when it has at most 4 words' worth) at layer 0 and a
fresh set before each layer up to ``PROMPT_DEPTH_TEXT``; vision: ``N_CTX_VISION`` prompts appended before
``ln_pre`` and a fresh set before each layer up to ``PROMPT_DEPTH_VISION`` (``clipkit.deep_prompts``). Loss:
cross-entropy. Official keys ``TRAINER.IVLP.N_CTX_VISION / N_CTX_TEXT / CTX_INIT / PREC / PROMPT_DEPTH_VISION /
PROMPT_DEPTH_TEXT``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn
from dassl.engine import TRAINER_REGISTRY

from clipkit.config import ConfigError, key, prec_key, register_settings
from clipkit.deep_prompts import DeepPromptCLIP
from clipkit.prompted import Learner, backbone_identity, init_context
from clipkit.routing import RoleRouting, routing_masks
from clipkit.trainer import PromptTrainer


def _positive(v) -> bool:
    return v > 0


@register_settings
@dataclass(frozen=True)
class IVLPSettings(RoleRouting):
    NODE: ClassVar[str] = "IVLP"
    N_CTX_VISION: int = key(2, "vision prompts per layer", check=_positive, rule="> 0", identity=True)
    N_CTX_TEXT: int = key(2, "text context vectors per layer", check=_positive, rule="> 0", identity=True)
    CTX_INIT: str = key("a photo of a", "initial words of the layer-0 text context (used when N_CTX_TEXT <= 4)",
                        identity=True)
    PREC: str = prec_key("amp")
    PROMPT_DEPTH_VISION: int = key(9, "vision layers with prompts (0: none; 1: input only)",
                                   check=lambda v: v >= 0, rule=">= 0", identity=True)
    PROMPT_DEPTH_TEXT: int = key(9, "text layers with prompts (1: input only)", check=_positive, rule=">= 1",
                                 identity=True)


def normal_prompts(count: int, n: int, width: int) -> nn.ParameterList:
    """``count`` prompt sets ``[n, width]`` drawn from ``N(0, 0.02)``, one after the other."""
    out = []
    for _ in range(count):
        t = torch.empty(n, width)
        nn.init.normal_(t, std=0.02)
        out.append(nn.Parameter(t))
    return nn.ParameterList(out)


class IVLPLearner(Learner):
    """Layer-0 text context, deep text prompts, the vision prompt before ``ln_pre``, deep vision prompts."""

    def __init__(self, identity: dict, text_ctx: torch.Tensor, s: IVLPSettings, text_width: int,
                 vision_width: int) -> None:
        super().__init__(identity)
        self.text_ctx = nn.Parameter(text_ctx)
        self.text_deep = normal_prompts(s.PROMPT_DEPTH_TEXT - 1, s.N_CTX_TEXT, text_width)
        self.vision_deep = normal_prompts(s.PROMPT_DEPTH_VISION, s.N_CTX_VISION, vision_width)  # [0] before ln_pre

    def forward(self) -> dict[str, list[torch.Tensor]]:
        return {"text": [self.text_ctx, *self.text_deep], "vision": list(self.vision_deep)}


def vl_model(clip_model, learner_cls, s, trainer: str, backbone: str,
             model_cls: type[DeepPromptCLIP] = DeepPromptCLIP, **learner_kw) -> DeepPromptCLIP:
    """A :class:`DeepPromptCLIP` with the IVLP-style context initialisation; shared by IVLP-like trainers."""
    text_width = clip_model.ln_final.weight.shape[0]
    vision_width = clip_model.visual.transformer.width if hasattr(clip_model.visual, "transformer") else 0
    fields = {f.name for f in dataclasses.fields(s)}
    for attr, depth, layers, tower in (
            ("PROMPT_DEPTH_TEXT", s.PROMPT_DEPTH_TEXT, clip_model.transformer.layers, "text"),
            ("PROMPT_DEPTH_VISION", s.PROMPT_DEPTH_VISION,
             clip_model.visual.transformer.layers if vision_width else 0, "vision")):
        if depth > layers:
            name = f"TRAINER.{s.NODE}.{attr if attr in fields else 'PROMPT_DEPTH'}"
            raise ConfigError(f"{name}={depth} is deeper than this CLIP's {layers} {tower} layers; "
                              f"set it to at most {layers}")
    ctx, n_ctx, prefix = init_context(clip_model, s.CTX_INIT, s.N_CTX_TEXT, (s.N_CTX_TEXT, text_width), rule="ivlp")
    masks, extra = [], {}
    if vision_width and s.PROMPT_DEPTH_VISION:  # the prompts are in every vision block's input
        n_layers = clip_model.visual.transformer.layers
        masks, extra = routing_masks(s, backbone, clip_model, range(1, n_layers + 1), s.N_CTX_VISION)
    identity = {"trainer": trainer, **backbone_identity(clip_model), **s.identity(), **extra}
    learner = learner_cls(identity, ctx, s, text_width, vision_width, **learner_kw)
    return model_cls(clip_model, learner, n_ctx, s.PROMPT_DEPTH_TEXT, s.N_CTX_VISION, s.PROMPT_DEPTH_VISION, prefix,
                     vision_masks=masks or None)


@TRAINER_REGISTRY.register()
class IVLP(PromptTrainer):
    Settings = IVLPSettings

    @classmethod
    def make_model(cls, cfg, clip_model, settings=None, classnames=None) -> DeepPromptCLIP:
        return vl_model(clip_model, IVLPLearner, settings or cls.Settings.from_cfg(cfg), "IVLP",
                        cfg.MODEL.BACKBONE.NAME)
