"""CoOp (Zhou et al., IJCV 2022): learnable context words in the text prompt, one shared or one per class.

Prompt ``[SOS] ctx_1 .. ctx_n {class}. [EOS]`` (context at ``end``; ``middle`` / ``front`` move the class
tokens), spliced into the token embeddings before the positional embedding; frozen image encoder; loss:
cross-entropy. Official keys ``TRAINER.COOP.N_CTX / CTX_INIT / CSC / CLASS_TOKEN_POSITION / PREC``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Sequence

import torch
import torch.nn as nn
from dassl.engine import TRAINER_REGISTRY

from clipkit.config import ConfigError, Settings, key, prec_key, register_settings
from clipkit.prompted import ContextText, Learner, PromptedCLIP, backbone_identity, init_context
from clipkit.prompts import CLASS_TOKEN_POSITIONS, context_prompts
from clipkit.trainer import PromptTrainer


@register_settings
@dataclass(frozen=True)
class CoOpSettings(Settings):
    NODE: ClassVar[str] = "COOP"
    N_CTX: int = key(16, "learnable context tokens (ignored when CTX_INIT is set: its word count)",
                     check=lambda v: v > 0, rule="> 0", identity=True)
    CSC: bool = key(False, "class-specific context (random init only, as in CoOp)", identity=True)
    CTX_INIT: str = key("", "initialise the context from these words, e.g. 'a photo of a'", identity=True)
    CLASS_TOKEN_POSITION: str = key("end", "where the class name sits: end | middle | front",
                                    choices=CLASS_TOKEN_POSITIONS, identity=True)
    PREC: str = prec_key("amp")


class CoOpLearner(Learner):
    """The context vectors: ``[n_ctx, D]``, or ``[C, n_ctx, D]`` class-specific."""

    def __init__(self, identity: dict, ctx: torch.Tensor) -> None:
        super().__init__(identity)
        self.ctx = nn.Parameter(ctx)

    def forward(self) -> dict[str, torch.Tensor]:
        return {"ctx": self.ctx}


class CoOpModel(PromptedCLIP):
    """Frozen CLIP whose class prompts carry the learnt context; ViT or ResNet image encoder."""

    def __init__(self, clip_model, settings: CoOpSettings, classnames: Sequence[str] | None) -> None:
        width = clip_model.ln_final.weight.shape[0]
        csc = settings.CSC and not settings.CTX_INIT
        if csc and not classnames:
            raise ConfigError("TRAINER.COOP.CSC True learns one context per class: the model needs the classes")
        shape = (len(classnames), settings.N_CTX, width) if csc else (settings.N_CTX, width)
        ctx, n_ctx, prefix = init_context(clip_model, settings.CTX_INIT, settings.N_CTX, shape)
        identity = {"trainer": "CoOp", **backbone_identity(clip_model), **settings.identity(),
                    "classes": len(classnames) if csc else None}
        super().__init__(clip_model, CoOpLearner(identity, ctx))
        self.n_ctx, self.csc = n_ctx, csc
        self.ctx_init, self.position = prefix, settings.CLASS_TOKEN_POSITION
        self.prompts = ContextText()

    def prepare_classes(self, classnames, template) -> None:
        if self.csc and len(classnames) != self.learner.ctx.shape[0]:
            raise ConfigError(f"class-specific context (TRAINER.COOP.CSC) was learnt for {self.learner.ctx.shape[0]} "
                              f"classes; it cannot score {len(classnames)} (no base-to-novel transfer with CSC)")
        self.prompts.set(self.text, context_prompts(classnames, self.n_ctx, self.clip.context_length, self.ctx_init,
                                                    self.position, self.csc))

    def text_features(self, prompts=None) -> torch.Tensor:
        prompts = prompts if prompts is not None else self.learner_outputs()
        p, s = self.prompts.sequences(prompts["ctx"], per="class" if self.csc else "shared")
        return self.normalize(self.text.run_prefixed(p, s, self.prompts.eot))

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.frozen_image_features(image)
        text = self.class_text()
        return {"logits": self.logits(f, text), "f_image": f, "text": text}


@TRAINER_REGISTRY.register()
class CoOp(PromptTrainer):
    Settings = CoOpSettings

    @classmethod
    def make_model(cls, cfg, clip_model, settings=None, classnames=None) -> CoOpModel:
        return CoOpModel(clip_model, settings or cls.Settings.from_cfg(cfg), classnames)
