"""Zero-shot CLIP: the first row of every results table. Evaluation only."""
from __future__ import annotations

import logging

import torch
import torch.nn as nn
from dassl.engine import TRAINER_REGISTRY, TrainerX

from clipkit import load_clip, template_for
from clipkit.precision import PRECISIONS, PrecisionStep
from clipkit.text import class_prompts, encode_prompts

from .config import trainer_config

logger = logging.getLogger(__name__)


@trainer_config
def _zsclip_config(cfg) -> None:
    from yacs.config import CfgNode as CN

    cfg.TRAINER.ZSCLIP = CN()
    cfg.TRAINER.ZSCLIP.PREC = "fp32"  # fp32 or bf16 (inference autocast); amp is fp16 autocast on CUDA


class ZeroshotClassifier(nn.Module):
    """Cosine similarity between frozen CLIP image features and class-prompt text features."""

    def __init__(self, clip_model) -> None:
        super().__init__()
        self.clip = clip_model
        self.register_buffer("text_features", torch.empty(0), persistent=False)

    @torch.no_grad()
    def set_classes(self, prompts: list[str]) -> None:
        device = self.clip.logit_scale.device
        self.text_features = encode_prompts(self.clip, prompts, device)  # [C, E]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``image``: [B, 3, H, W] -> logits [B, C]."""
        if self.text_features.numel() == 0:
            raise RuntimeError("call set_classes() before forward()")
        feats = self.clip.encode_image(image).float()
        feats = feats / feats.norm(dim=-1, keepdim=True)
        return self.clip.logit_scale.exp() * feats @ self.text_features.t()


@TRAINER_REGISTRY.register()
class ZeroshotCLIP(TrainerX):
    """Text features are computed once per evaluation from the data set's template."""

    def check_cfg(self, cfg) -> None:
        if cfg.TRAINER.ZSCLIP.PREC not in PRECISIONS:
            raise ValueError(f"TRAINER.ZSCLIP.PREC={cfg.TRAINER.ZSCLIP.PREC!r}; choose one of {list(PRECISIONS)}")

    def build_model(self) -> None:
        cfg = self.cfg
        clip_model = load_clip(cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.PATH, self.device)
        self.model = ZeroshotClassifier(clip_model).to(self.device)
        self.template = template_for(cfg.DATASET.NAME, cfg.DATASET.PROMPT_TEMPLATE)
        self.step = PrecisionStep(cfg.TRAINER.ZSCLIP.PREC, self.device)  # inference autocast only
        print(f"Prompt template: {self.template!r}")

    def test(self, split=None):
        classnames = [self.lab2cname[i] for i in range(self.num_classes)]
        self.model.set_classes(class_prompts(classnames, self.template))
        return super().test(split)

    def model_inference(self, input: torch.Tensor) -> torch.Tensor:
        with self.step.autocast():
            return self.model(input).float()

    def forward_backward(self, batch):
        raise NotImplementedError("ZeroshotCLIP does not train; run with --eval-only")

    def save_model(self, *args, **kwargs) -> None:
        pass  # nothing trainable

    def load_model(self, directory, epoch=None) -> None:
        pass
