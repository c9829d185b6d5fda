"""CoCoOp (Zhou et al., CVPR 2022): CoOp's context shifted per image by a small meta-network.

``ctx_i = ctx + meta_net(f_i)`` for the normalised frozen image feature ``f_i``, so every image has its own
class prompts; logits ``scale * f_i . t_i(c)``. Every (image, class) prompt is encoded, but the rows every
class shares (start-of-text and the image's context) once per image and the prompts cut after their
end-of-text token (both exact). Official keys ``TRAINER.COCOOP.N_CTX / CTX_INIT / PREC``.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn
from dassl.engine import TRAINER_REGISTRY

from clipkit.config import Settings, key, prec_key, register_settings
from clipkit.prompted import ContextText, Learner, PromptedCLIP, backbone_identity, init_context
from clipkit.prompts import context_prompts
from clipkit.trainer import PromptTrainer


@register_settings
@dataclass(frozen=True)
class CoCoOpSettings(Settings):
    NODE: ClassVar[str] = "COCOOP"
    N_CTX: int = key(16, "learnable context tokens (ignored when CTX_INIT is set: its word count)",
                     check=lambda v: v > 0, rule="> 0", identity=True)
    CTX_INIT: str = key("", "initialise the context from these words, e.g. 'a photo of a'", identity=True)
    PREC: str = prec_key("amp")


class CoCoOpLearner(Learner):
    """The context ``[n_ctx, D]`` and the meta-network ``E -> E/16 -> D`` that shifts it per image."""

    def __init__(self, identity: dict, ctx: torch.Tensor, vis_dim: int, ctx_dim: int) -> None:
        super().__init__(identity)
        self.ctx = nn.Parameter(ctx)
        self.meta_net = nn.Sequential(OrderedDict([
            ("linear1", nn.Linear(vis_dim, vis_dim // 16)), ("relu", nn.ReLU(inplace=True)),
            ("linear2", nn.Linear(vis_dim // 16, ctx_dim))]))

    def forward(self, image_features: torch.Tensor) -> dict[str, torch.Tensor]:
        """``image_features [B, E]`` (normalised) -> per-image context ``[B, n_ctx, D]``."""
        bias = self.meta_net(image_features.to(self.ctx.dtype))  # [B, D]
        return {"ctx": self.ctx.unsqueeze(0) + bias.unsqueeze(1)}


class CoCoOpModel(PromptedCLIP):
    def __init__(self, clip_model, settings: CoCoOpSettings) -> None:
        width = clip_model.ln_final.weight.shape[0]
        ctx, n_ctx, prefix = init_context(clip_model, settings.CTX_INIT, settings.N_CTX, (settings.N_CTX, width))
        identity = {"trainer": "CoCoOp", **backbone_identity(clip_model), **settings.identity()}
        vis_dim = int(clip_model.text_projection.shape[1])
        super().__init__(clip_model, CoCoOpLearner(identity, ctx, vis_dim, width))
        self.n_ctx, self.ctx_init = n_ctx, prefix
        self.prompts = ContextText()

    def prepare_classes(self, classnames, template) -> None:
        self.prompts.set(self.text, context_prompts(classnames, self.n_ctx, self.clip.context_length, self.ctx_init))

    def text_features(self, prompts=None) -> torch.Tensor:
        """Per-image class features ``[B, C, E]``, normalised, for the learner's per-image context."""
        if prompts is None:
            raise ValueError("CoCoOp's class features depend on the image: pass self.learner_outputs(image_features)")
        ctx = prompts["ctx"]  # [B, n_ctx, D]
        p, s = self.prompts.sequences(ctx, per="image")
        feats = self.text.run_prefixed(p, s, self.prompts.eot)  # [B*C, E]
        return self.normalize(feats).view(ctx.shape[0], -1, feats.shape[-1])

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.frozen_image_features(image)  # [B, E]
        text = self.text_features(self.learner_outputs(f))  # [B, C, E]
        logits = self.clip.logit_scale.exp() * torch.einsum("be,bce->bc", f, text)
        return {"logits": logits, "f_image": f}


@TRAINER_REGISTRY.register()
class CoCoOp(PromptTrainer):
    Settings = CoCoOpSettings

    @classmethod
    def make_model(cls, cfg, clip_model, settings=None, classnames=None) -> CoCoOpModel:
        return CoCoOpModel(clip_model, settings or cls.Settings.from_cfg(cfg))
