"""PromptSRC (Khattak et al., ICCV 2023): IVLP's deep prompts regularised towards frozen CLIP.

Tokens enter as in IVLP (``clipkit.deep_prompts``). Losses on top of cross-entropy (mutual agreement with
frozen CLIP): ``L1(text, frozen text)`` weighted ``TEXT_LOSS_WEIGHT`` (frozen text = the mean of frozen CLIP's
features over 60 ImageNet templates: textual diversity), ``L1(image, frozen image)`` weighted
``IMAGE_LOSS_WEIGHT``, and ``KL(softmax(logits) || softmax(zero-shot logits))`` summed over the batch and
divided by the number of logits. Gaussian prompt aggregation: after every epoch the learner's weights join a
running sum weighted by a Gaussian over epochs (``GPA_MEAN``, ``GPA_STD``), and the sum replaces them after
the last epoch. Official keys ``TRAINER.PROMPTSRC.*``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from dassl.engine import TRAINER_REGISTRY

from clipkit.config import key, prec_key, register_settings
from clipkit.deep_prompts import DeepPromptCLIP
from clipkit.routing import RoleRouting
from clipkit.templates import IMAGENET_TEMPLATES
from clipkit.text import ensemble_features
from clipkit.trainer import PromptTrainer

from .ivlp import IVLPLearner, vl_model


def _nonneg(v) -> bool:
    return v >= 0


@register_settings
@dataclass(frozen=True)
class PromptSRCSettings(RoleRouting):
    """Defaults and their types are the official ``extend_cfg``'s (integers where it has integers), so the
    official YAML files merge unchanged."""
    NODE: ClassVar[str] = "PROMPTSRC"
    N_CTX_VISION: int = key(4, "vision prompts per layer", check=lambda v: v > 0, rule="> 0", identity=True)
    N_CTX_TEXT: int = key(4, "text context vectors per layer", check=lambda v: v > 0, rule="> 0", identity=True)
    CTX_INIT: str = key("a photo of a", "initial words of the layer-0 text context (used when N_CTX_TEXT <= 4)",
                        identity=True)
    PREC: str = prec_key("amp")
    PROMPT_DEPTH_VISION: int = key(9, "vision layers with prompts (0: none; 1: input only)", check=_nonneg,
                                   rule=">= 0", identity=True)
    PROMPT_DEPTH_TEXT: int = key(9, "text layers with prompts (1: input only)", check=lambda v: v >= 1,
                                 rule=">= 1", identity=True)
    TEXT_LOSS_WEIGHT: float = key(25, "weight of L1(text features, frozen template-ensemble features)",
                                  check=_nonneg, rule=">= 0")
    IMAGE_LOSS_WEIGHT: float = key(10, "weight of L1(image features, frozen image features)", check=_nonneg,
                                   rule=">= 0")
    GPA_MEAN: float = key(15, "Gaussian prompt aggregation: mean epoch (1-based)")
    GPA_STD: float = key(1, "Gaussian prompt aggregation: standard deviation in epochs", check=lambda v: v > 0,
                         rule="> 0")


def gpa_weights(epochs: int, mean: float, std: float) -> list[float]:
    """The weight of each epoch's learner in the aggregate: a Gaussian over epochs ``1..epochs``, normalised."""
    g = [math.exp(-0.5 * ((e - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi)) for e in range(1, epochs + 1)]
    total = sum(g)
    return [w / total for w in g]


class PromptSRCModel(DeepPromptCLIP):
    """IVLP's model plus the frozen template-ensemble class features (``text_ensemble``, normalised)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.register_buffer("text_ensemble", torch.empty(0), persistent=False)

    def prepare_classes(self, classnames, template) -> None:
        super().prepare_classes(classnames, template)
        self.text_ensemble = self.normalize(ensemble_features(self.clip, classnames, IMAGENET_TEMPLATES))


@TRAINER_REGISTRY.register()
class PromptSRC(PromptTrainer):
    Settings = PromptSRCSettings

    @classmethod
    def make_model(cls, cfg, clip_model, settings=None, classnames=None) -> PromptSRCModel:
        s = settings or cls.Settings.from_cfg(cfg)
        return vl_model(clip_model, IVLPLearner, s, "PromptSRC", cfg.MODEL.BACKBONE.NAME, model_cls=PromptSRCModel)

    def build_model(self) -> None:
        super().build_model()
        s = self.settings
        self.gpa_weights = gpa_weights(self.cfg.OPTIM.MAX_EPOCH, s.GPA_MEAN, s.GPA_STD)
        self.gpa_sum: dict[str, torch.Tensor] | None = None

    def train_outputs(self, image, label):
        out = self.model(image, with_frozen=True)
        out["zero_shot_logits"] = self.model.logits(out["f_frozen"], self.model.text_ensemble)
        return out

    def loss_terms(self, out, label):
        s = self.settings
        logits = out["logits"].float()
        kl = F.kl_div(F.log_softmax(logits, dim=1), F.log_softmax(out["zero_shot_logits"].float(), dim=1),
                      reduction="sum", log_target=True) / logits.numel()
        return {"ce": (1.0, F.cross_entropy(logits, label)),
                "scl_text": (s.TEXT_LOSS_WEIGHT, F.l1_loss(out["text"], self.model.text_ensemble)),
                "scl_image": (s.IMAGE_LOSS_WEIGHT, F.l1_loss(out["f_image"], out["f_frozen"])),
                "scl_logits": (1.0, kl)}

    def extra_checkpoint_state(self) -> dict:
        """The running aggregate joins the exact-resume checkpoint (built-in engine), so a resumed run deploys
        the same prompts as an uninterrupted one."""
        state = super().extra_checkpoint_state() if hasattr(super(), "extra_checkpoint_state") else {}
        state["gpa_sum"] = self.gpa_sum
        return state

    def load_extra_checkpoint_state(self, state: dict) -> None:
        if hasattr(super(), "load_extra_checkpoint_state"):
            super().load_extra_checkpoint_state(state)
        self.gpa_sum = (state or {}).get("gpa_sum")

    def end_of_epoch(self) -> None:
        """Add this epoch's learner to the Gaussian-weighted sum; after the last epoch, deploy the sum."""
        w = self.gpa_weights[self.epoch]
        params = {n: p.detach() for n, p in self.learner.named_parameters()}
        if self.gpa_sum is None:
            self.gpa_sum = {n: p * w for n, p in params.items()}
        else:
            self.gpa_sum = {n: self.gpa_sum[n] + params[n] * w for n in params}
        if self.epoch + 1 == self.max_epoch:
            print("Using the Gaussian-aggregated prompts (GPA) for the final model")
            with torch.no_grad():
                for n, p in self.learner.named_parameters():
                    p.copy_(self.gpa_sum[n])
