"""MMRL (Guo & Gu, CVPR 2025): a shared representation space whose tokens enter the higher layers of both towers.

Learnable representation tokens ``R [n, REP_DIM]``; for each layer ``l`` in ``REP_LAYERS`` two linear maps
(all initialised alike, deep copies of one layer) give the tokens that enter the vision tower after [CLS]
and the text tower after start-of-text: inserted at the first listed layer, replaced at the next listed ones,
carried by the others. Image features: [CLS] through CLIP's frozen projection (``f``), and the mean of the
representation tokens after ``ln_post`` through a learnt projection ``proj_rep`` (``f_rep``). Logits
``100 f.t`` and ``100 f_rep.t`` (the official fixed scale). Loss: ``ALPHA CE(logits) + (1 - ALPHA)
CE(logits_rep) + REG_WEIGHT (1 - cos(f, f_clip)) + REG_WEIGHT (1 - cos(t, t_clip))``. Inference (``TASK``):
``ALPHA logits + (1 - ALPHA) logits_rep`` on base classes, few-shot and ImageNet; ``logits`` alone on new
classes and cross-data targets. Official keys ``TRAINER.MMRL.*`` and ``TASK``.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F
from dassl.engine import TRAINER_REGISTRY

from clipkit.config import ConfigError, key, prec_key, register_settings
from clipkit.prompted import Learner, PromptedCLIP, backbone_identity
from clipkit.prompts import template_prompts
from clipkit.routing import RoleRouting, routing_masks
from clipkit.surgery import run_injected
from clipkit.text import encode_class_prompts
from clipkit.trainer import PromptTrainer

LOGIT_SCALE = 100.0  # MMRL uses a fixed 100 (OpenAI's ViT-B/16 has logit_scale.exp() == 100 too)
TASKS = ("B2N", "FS", "CD")
# The official repository's per-data-set values (yunncheng/MMRL trainers/config.py), for every TASK.
MMRL_TABLE: dict[str, dict] = {
    "ImageNet": {"REG_WEIGHT": 0.5}, "Caltech101": {"REG_WEIGHT": 0.5}, "OxfordPets": {"REG_WEIGHT": 0.2},
    "StanfordCars": {"REG_WEIGHT": 7.0}, "OxfordFlowers": {"REG_WEIGHT": 4.0}, "Food101": {"REG_WEIGHT": 5.0},
    "FGVCAircraft": {"REG_WEIGHT": 6.0}, "SUN397": {"REG_WEIGHT": 6.0}, "DescribableTextures": {"REG_WEIGHT": 6.0},
    "EuroSAT": {"REG_WEIGHT": 0.01, "REP_DIM": 2048}, "UCF101": {"REG_WEIGHT": 3.0},
}


@register_settings
@dataclass(frozen=True)
class MMRLSettings(RoleRouting):
    NODE: ClassVar[str] = "MMRL"
    ALPHA: float = key(0.7, "weight of the [CLS] logits against the representation logits (loss and fusion)",
                       check=lambda v: 0.0 <= v <= 1.0, rule="in [0, 1]")
    REG_WEIGHT: float = key(1.0, "weight of each cosine regulariser to frozen CLIP's features",
                            check=lambda v: v >= 0, rule=">= 0")
    REP_LAYERS: list = key([6, 7, 8, 9, 10, 11, 12], "layers (from 1) the representation tokens enter",
                           identity=True)
    REP_DIM: int = key(512, "dimension of the shared representation space", check=lambda v: v > 0, rule="> 0",
                       identity=True)
    N_REP_TOKENS: int = key(5, "representation tokens", check=lambda v: v > 0, rule="> 0", identity=True)
    PREC: str = prec_key("amp")
    DATASET_TABLE: bool = key(True, "apply the official per-data-set REG_WEIGHT / REP_DIM after the YAML files")

    @classmethod
    def dataset_overrides(cls, dataset: str, task: str) -> dict:
        """The official per-data-set values (MMRL's ``trainers/config.py``). Its cross-data scripts set
        ``REG_WEIGHT 0.2 REP_DIM 512`` on the command line after the table, i.e. undo it: so none for CD."""
        row = {} if task == "CD" else MMRL_TABLE.get(dataset, {})
        return {f"TRAINER.{cls.NODE}.{k}": v for k, v in row.items()}

    def validate(self) -> None:
        layers = list(self.REP_LAYERS)
        if not layers or layers != sorted(set(layers)) or layers[0] < 1:
            raise ConfigError(f"TRAINER.MMRL.REP_LAYERS={layers} must list distinct layers (from 1), increasing")


class MMRLLearner(Learner):
    """``R``, one map per listed layer into each tower, and the representation projection ``proj_rep``."""

    def __init__(self, identity: dict, s: MMRLSettings, clip_model) -> None:
        super().__init__(identity)
        vision_width, text_width = clip_model.visual.transformer.width, clip_model.transformer.width
        embed_dim = int(clip_model.text_projection.shape[1])
        self.proj_rep = nn.Parameter(vision_width ** -0.5 * torch.randn(vision_width, embed_dim))
        self.compound_rep_tokens = nn.Parameter(torch.empty(s.N_REP_TOKENS, s.REP_DIM))
        nn.init.normal_(self.compound_rep_tokens, std=0.02)
        r2v, r2t = nn.Linear(s.REP_DIM, vision_width), nn.Linear(s.REP_DIM, text_width)
        n = len(s.REP_LAYERS)
        self.compound_rep_tokens_r2vproj = nn.ModuleList([copy.deepcopy(r2v) for _ in range(n)])
        self.compound_rep_tokens_r2tproj = nn.ModuleList([copy.deepcopy(r2t) for _ in range(n)])

    def forward(self) -> dict:
        r = self.compound_rep_tokens
        return {"vision": [f(r) for f in self.compound_rep_tokens_r2vproj],
                "text": [f(r) for f in self.compound_rep_tokens_r2tproj], "proj_rep": self.proj_rep}


class MMRLModel(PromptedCLIP):
    """Named outputs ``logits`` ([CLS]), ``logits_rep``, ``logits_fusion``, features, ``text``."""

    INFERENCE_MODES = ("fusion", "cls")

    def __init__(self, clip_model, s: MMRLSettings, learner_cls: type[Learner] | None = None, trainer: str = "MMRL",
                 beta: float = 1.0, backbone: str = "ViT-B/16") -> None:
        if not hasattr(clip_model.visual, "transformer"):
            raise ConfigError("MMRL needs a ViT image encoder")
        layers = list(s.REP_LAYERS)
        n_vision, n_text = clip_model.visual.transformer.layers, clip_model.transformer.layers
        if layers[-1] > min(n_vision, n_text):
            raise ConfigError(f"TRAINER.MMRL.REP_LAYERS={layers} goes past this CLIP's {n_vision} vision / {n_text} "
                              "text layers; list layers that both towers have")
        masks, extra = routing_masks(s, backbone, clip_model, range(layers[0], n_vision + 1), s.N_REP_TOKENS)
        identity = {"trainer": trainer, **backbone_identity(clip_model), **s.identity(), **extra}
        learner = (learner_cls or MMRLLearner)(identity, s, clip_model)
        super().__init__(clip_model, learner)
        self.register_masks(masks)  # per vision block from the first listed layer
        self.layers, self.start = layers, layers[0] - 1  # 0-based first block with tokens
        self.beta = beta  # 1: tokens replaced at every listed layer after the first (MMRL); < 1 anchored (MMRL++)
        self.alpha = s.ALPHA
        for name in ("text_eot", "text_p", "text_s", "text_frozen"):
            self.register_buffer(name, torch.empty(0), persistent=False)

    def _per_block(self, sets: list[torch.Tensor], n_blocks: int) -> list[torch.Tensor | None]:
        """Token sets for blocks ``start..n_blocks-1``: the next set at a listed layer, ``None`` (carry) else."""
        it = iter(sets)
        return [next(it) if b + 1 in self.layers else None for b in range(self.start, n_blocks)]

    def prepare_classes(self, classnames, template) -> None:
        prompts = template_prompts(classnames, template, self.clip.context_length).to(self.device)
        self.text_eot = prompts.eot
        self.text_p, self.text_s = self.text.shared_prefix(prompts.ids, prompts.shared, self.start)
        self.text_frozen = encode_class_prompts(self.clip, prompts)

    def text_features(self, prompts=None) -> torch.Tensor:
        prompts = prompts if prompts is not None else self.learner_outputs()
        tokens = self._per_block(prompts["text"], len(self.text.blocks))
        feats = self.text.run_prefixed(self.text_p, self.text_s, self.text_eot, self.start, tokens, self.beta,
                                       present=False)
        return self.normalize(feats)

    def image_features(self, image: torch.Tensor, prompts: dict, with_frozen: bool = False) -> dict:
        with torch.no_grad():  # blocks before the first listed layer have no learnable input: shared, no grad
            prefix = self.vision.prefix(image, self.start)
        # the official inserts the tokens after [CLS]; attention does not depend on where a token sits (no
        # positional embedding is added to them), so they are appended, which lets the frozen path share work
        out = run_injected(self.vision.blocks[self.start:], prefix, self._per_block(prompts["vision"],
                           len(self.vision.blocks)), insert_at=prefix.shape[1], beta=self.beta, masks=self.masks,
                           keep_first=True,
                           with_stock=with_frozen)
        f = self.vision.project(out.x[:, 0])
        f_rep = self.vision.visual.ln_post(out.tokens).mean(dim=1) @ prompts["proj_rep"].to(out.x.dtype)
        feats = {"f_image": self.normalize(f), "f_rep": self.normalize(f_rep)}
        if with_frozen:
            with torch.no_grad():
                feats["f_frozen"] = self.normalize(self.vision.project(out.frozen[:, 0]))
        return feats

    def forward(self, image: torch.Tensor, with_frozen: bool = False) -> dict[str, torch.Tensor]:
        prompts = self.learner_outputs()
        feats = self.image_features(image, prompts, with_frozen)
        text = self.class_text(prompts)
        logits = LOGIT_SCALE * feats["f_image"] @ text.t()
        logits_rep = LOGIT_SCALE * feats["f_rep"] @ text.t()
        fusion = self.alpha * logits + (1 - self.alpha) * logits_rep
        return dict(feats, logits=fusion, logits_cls=logits, logits_rep=logits_rep, logits_fusion=fusion, text=text)

    @torch.no_grad()
    def predict(self, image: torch.Tensor, mode: str = "fusion") -> torch.Tensor:
        out = self(image)
        return out["logits_cls"] if mode == "cls" else out["logits_fusion"]


@TRAINER_REGISTRY.register()
class MMRL(PromptTrainer):
    Settings = MMRLSettings

    @classmethod
    def make_model(cls, cfg, clip_model, settings=None, classnames=None) -> MMRLModel:
        return MMRLModel(clip_model, settings or cls.Settings.from_cfg(cfg), backbone=cfg.MODEL.BACKBONE.NAME)

    def check_cfg(self, cfg) -> None:
        super().check_cfg(cfg)
        if cfg.TASK not in TASKS:
            raise ConfigError(f"TASK={cfg.TASK!r} is not supported; choose one of {list(TASKS)}")

    def train_outputs(self, image, label):
        return self.model(image, with_frozen=self.settings.REG_WEIGHT > 0)

    def loss_terms(self, out, label):
        s = self.settings
        reg_img = reg_text = torch.zeros((), device=label.device)
        if s.REG_WEIGHT:
            reg_img = 1 - F.cosine_similarity(out["f_image"], out["f_frozen"], dim=1).mean()
            reg_text = 1 - F.cosine_similarity(out["text"], self.model.text_frozen, dim=1).mean()
        return {"ce": (s.ALPHA, F.cross_entropy(out["logits_cls"].float(), label)),
                "ce_rep": (1 - s.ALPHA, F.cross_entropy(out["logits_rep"].float(), label)),
                "cos_img": (s.REG_WEIGHT, reg_img), "cos_text": (s.REG_WEIGHT, reg_text)}

    def inference_mode(self) -> str:
        task = self.cfg.TASK
        if task == "B2N":
            return "fusion" if self.cfg.DATASET.SUBSAMPLE_CLASSES == "base" else "cls"
        if task == "CD":
            return "fusion" if self.cfg.DATASET.NAME == "ImageNet" else "cls"
        return "fusion"
