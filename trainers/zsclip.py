"""Zero-shot CLIP: the first row of every results table. Evaluation only; the smallest user of the layer."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from dassl.engine import TRAINER_REGISTRY

from clipkit.config import Settings, prec_key, register_settings
from clipkit.prompted import PromptedCLIP
from clipkit.prompts import template_prompts
from clipkit.text import encode_class_prompts
from clipkit.trainer import PromptTrainer


@register_settings
@dataclass(frozen=True)
class ZeroshotSettings(Settings):
    NODE: ClassVar[str] = "ZSCLIP"
    PREC: str = prec_key("fp32")


class ZeroshotModel(PromptedCLIP):
    """Cosine similarity of frozen CLIP image features and the data set's template prompts (ViT or ResNet)."""

    def __init__(self, clip_model) -> None:
        super().__init__(clip_model, learner=None)
        self.register_buffer("text_frozen", torch.empty(0), persistent=False)

    def prepare_classes(self, classnames, template) -> None:
        prompts = template_prompts(classnames, template, self.clip.context_length)
        self.text_frozen = encode_class_prompts(self.clip, prompts)

    def text_features(self, prompts=None) -> torch.Tensor:
        return self.text_frozen

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.normalize(self.clip.encode_image(image))
        return {"logits": self.logits(feats, self.text_features()), "f_image": feats}


@TRAINER_REGISTRY.register()
class ZeroshotCLIP(PromptTrainer):
    """Text features are computed once per class set from the data set's template."""

    Settings = ZeroshotSettings

    @classmethod
    def make_model(cls, cfg, clip_model, settings=None, classnames=None) -> ZeroshotModel:
        return ZeroshotModel(clip_model)

    def forward_backward(self, batch):
        raise NotImplementedError("ZeroshotCLIP does not train; run with --eval-only")
