"""DeAR: attribute tokens routed per attention head by role, with task-adaptive fusion.

Reads top-down: settings -> learner -> model (where the tokens enter, named outputs) -> trainer (losses).
Method element -> code:
- role-based mask (generalization isolated, attribute routing, mixed open): ``head_roles.role_masks``
- tokens at layers J..L with beta anchoring: ``clipkit.surgery.run_injected`` / ``TextTower.run_prefixed``
- f_cls / f_attr and the text path: ``DeARModel.image_features`` / ``DeARModel.text_features``
- fusion alpha = softmax(w), L_fusion = -log alpha_cls: ``DeARLearner`` / ``DeAR.loss_terms``
- L_reg (cosine to frozen CLIP): ``DeARModel.reg_loss``; inference modes: ``DeARModel.predict``
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F
from dassl.engine import TRAINER_REGISTRY

from clipkit.config import ConfigError, Settings, key, prec_key, register_settings
from clipkit.loader import describe_backbone
from clipkit.prompted import Learner, PromptedCLIP, backbone_identity
from clipkit.prompts import template_prompts
from clipkit.surgery import run_injected
from clipkit.text import encode_class_prompts
from clipkit.trainer import PromptTrainer
from head_roles import ABLATIONS, ATTR_INTERACTIONS, HeadRoles, ablate, load_roles, role_masks

INFERENCE_MODES = ("fusion", "decoupled", "cls")


@register_settings
@dataclass(frozen=True)
class DeARSettings(Settings):
    NODE: ClassVar[str] = "DEAR"
    ROLES_FILE: str = key("", "head-roles JSON; empty: head_roles/<backbone>.json (e.g. vit_b16.json)")
    INJECT_LAYER: int = key(0, "J, counted from 1; 0: the first layer listed in the roles file",
                            check=lambda v: v >= 0, rule=">= 0", identity=True)
    BETA: float = key(0.9, "anchoring: beta * token(l) + (1 - beta) * output(l - 1)",
                      check=lambda v: 0.0 <= v <= 1.0, rule="in [0, 1]", identity=True)
    N_TEXT_TOKENS: int = key(5, "learnable text tokens per injected text layer (0: no text tokens)",
                             check=lambda v: v >= 0, rule=">= 0", identity=True)
    TOKEN_INIT_STD: float = key(0.02, "normal init of the attribute and text tokens", check=lambda v: v >= 0,
                                rule=">= 0")
    MASK: str = key("role", "role | none | generalization_only | random_shuffle | isolate_all", choices=ABLATIONS,
                    identity=True)
    MASK_SEED: int = key(0, "seed of the random_shuffle ablation")
    ATTRIBUTES: list = key([], "the concepts that get attribute tokens, in token order (empty: the roles file's "
                                "core_attributes); heads of concepts without a token are isolated (paper's K ablation)",
                           identity=True)
    ATTR_INTERACTION: str = key("self", "self: attribute tokens do not see each other | all",
                                choices=ATTR_INTERACTIONS, identity=True)
    FUSION_INIT_CLS: float = key(0.7, "alpha_cls at initialisation (the rest split evenly)",
                                 check=lambda v: 0.0 < v < 1.0, rule="in (0, 1)")
    LAMBDA_REG: float = key(1.0, "weight of L_reg (cosine distance to frozen CLIP features)",
                            check=lambda v: v >= 0, rule=">= 0")
    LAMBDA_FUSION: float = key(0.7, "weight of L_fusion = -log(alpha_cls)", check=lambda v: v >= 0, rule=">= 0")
    FUSION_LR_MULT: float = key(1.0, "learning rate of the fusion weights, as a multiple of OPTIM.LR (1: the paper's "
                                     "single rate; the warm-up's constant rate applies to every group)",
                                check=lambda v: v > 0, rule="> 0")
    INFERENCE: str = key("fusion", "fusion | decoupled (fusion on base, [CLS] on new) | cls", choices=INFERENCE_MODES)
    PREC: str = prec_key("amp")


class DeARLearner(Learner):
    """Attribute tokens and text tokens per injected layer, the attribute projection, the fusion weights."""

    def __init__(self, identity: dict, attributes: tuple[str, ...], n_layers: int, width: int, text_width: int,
                 n_text_tokens: int, init_std: float, proj: torch.Tensor, fusion_init_cls: float) -> None:
        super().__init__(identity)
        k = len(attributes)
        self.attributes = attributes
        self.attribute_tokens = nn.Parameter(torch.randn(n_layers, k, width) * init_std)  # [J', K, Dv]
        self.text_tokens = nn.Parameter(torch.randn(n_layers, n_text_tokens, text_width) * init_std)  # [J', Kt, Dt]
        self.attribute_proj = nn.Parameter(proj.detach().clone())  # [Dv, E], initialised with CLIP's
        w = torch.zeros(k + 1)
        w[0] = math.log(fusion_init_cls / (1.0 - fusion_init_cls) * k)  # softmax(w)[0] == fusion_init_cls
        self.fusion_weights = nn.Parameter(w)  # [1 + K]: [CLS] first, then the attributes

    @property
    def alpha(self) -> torch.Tensor:
        """Fusion weights ``[1 + K]`` (softmax), [CLS] first."""
        return self.fusion_weights.softmax(dim=0)

    def forward(self) -> dict[str, torch.Tensor]:
        return {"attribute_tokens": self.attribute_tokens, "text_tokens": self.text_tokens,
                "attribute_proj": self.attribute_proj, "alpha": self.alpha}


class DeARModel(PromptedCLIP):
    """Frozen CLIP + :class:`DeARLearner`: tokens inserted at layer J of both towers, role masks in the vision
    tower; named outputs ``logits`` (fused), ``logits_cls``, ``logits_attr``, ``alpha``, features, ``text``."""

    INFERENCE_MODES = ("fusion", "cls")

    def __init__(self, clip_model, roles: HeadRoles, settings: DeARSettings) -> None:
        info = describe_backbone(clip_model)
        roles.check_backbone(info["layers"], info["heads"], info["width"])
        start = (settings.INJECT_LAYER or roles.first_layer) - 1  # 0-based index of the first injected block
        if not 0 <= start < info["layers"]:
            raise ConfigError(f"TRAINER.DEAR.INJECT_LAYER={settings.INJECT_LAYER} is outside 1..{info['layers']}")
        injected = list(range(start + 1, info["layers"] + 1))  # 1-based layers with tokens
        text_start = info["text_layers"] - len(injected)  # the text encoder gets as many deep layers
        if text_start < 0:
            raise ConfigError(f"the text encoder has {info['text_layers']} layers, fewer than the {len(injected)} "
                              f"injected from layer {start + 1}; set TRAINER.DEAR.INJECT_LAYER to at least "
                              f"{info['layers'] - info['text_layers'] + 1}")
        masked = ablate(roles, settings.MASK, settings.MASK_SEED)  # the roles the masks are built from
        identity = {"trainer": "DeAR", **backbone_identity(clip_model), **settings.identity(),
                    "roles": masked.digest}
        learner = DeARLearner(identity, tuple(roles.core_attributes), len(injected), info["width"],
                              info["text_width"], settings.N_TEXT_TOKENS, settings.TOKEN_INIT_STD,
                              clip_model.visual.proj, settings.FUSION_INIT_CLS)
        super().__init__(clip_model, learner)
        self.roles, self.masked_roles = roles, masked
        self.start, self.text_start = start, text_start
        self.beta = settings.BETA
        self.n_text_tokens = settings.N_TEXT_TOKENS
        self.register_masks(role_masks(masked, injected, self.vision.num_tokens, roles.core_attributes,
                                       info["heads"], settings.ATTR_INTERACTION))  # per injected block
        for name in ("text_eot", "text_p", "text_s", "text_frozen"):
            self.register_buffer(name, torch.empty(0), persistent=False)

    # -- classes -----------------------------------------------------------------------------------------
    def prepare_classes(self, classnames: list[str], template: str) -> None:
        """Tokenise the class prompts; cache the frozen features and the text rows after the layers < J."""
        prompts = template_prompts(classnames, template, self.clip.context_length).to(self.device)
        self.text_eot = prompts.eot
        self.text_p, self.text_s = self.text.shared_prefix(prompts.ids, prompts.shared, self.text_start)
        self.text_frozen = encode_class_prompts(self.clip, prompts)

    def text_features(self, prompts=None) -> torch.Tensor:
        if self.text_eot.numel() == 0:
            raise RuntimeError("call set_classes() first")
        if self.n_text_tokens == 0:
            return self.text_frozen
        prompts = prompts if prompts is not None else self.learner_outputs()
        feats = self.text.run_prefixed(self.text_p, self.text_s, self.text_eot, self.text_start,
                                       list(prompts["text_tokens"]), self.beta, present=False)
        return self.normalize(feats)

    # -- image -------------------------------------------------------------------------------------------
    def image_features(self, image: torch.Tensor, with_frozen: bool = False, prompts: dict | None = None,
                       ) -> dict[str, torch.Tensor]:
        """``f_cls [B, E]``, ``f_attr [B, K, E]`` (normalised) and, if asked, frozen CLIP's ``f_frozen``."""
        prompts = prompts if prompts is not None else self.learner_outputs()
        with torch.no_grad():  # layers before J carry no learnable state: run once, share with the frozen path
            prefix = self.vision.prefix(image, self.start)  # [B, N, Dv]
        out = run_injected(self.vision.blocks[self.start:], prefix, list(prompts["attribute_tokens"]),
                           insert_at=prefix.shape[1], beta=self.beta, masks=self.masks, keep_first=True,
                           with_stock=with_frozen)
        f_cls = self.vision.project(out.x[:, 0])
        f_attr = self.vision.visual.ln_post(out.tokens) @ prompts["attribute_proj"].to(out.x.dtype)
        feats = {"f_cls": self.normalize(f_cls), "f_attr": self.normalize(f_attr)}
        if with_frozen:
            with torch.no_grad():
                feats["f_frozen"] = self.normalize(self.vision.project(out.frozen[:, 0]))
        return feats

    # -- outputs -----------------------------------------------------------------------------------------
    def forward(self, image: torch.Tensor, with_frozen: bool = False) -> dict[str, torch.Tensor]:
        prompts = self.learner_outputs()
        feats = self.image_features(image, with_frozen, prompts)
        text = self.class_text(prompts)
        logits_cls = self.logits(feats["f_cls"], text)  # [B, C]
        logits_attr = self.logits(feats["f_attr"], text)  # [B, K, C]
        alpha = prompts["alpha"]
        fused = alpha[0] * logits_cls + torch.einsum("k,bkc->bc", alpha[1:], logits_attr)
        return dict(feats, logits=fused, logits_cls=logits_cls, logits_attr=logits_attr, alpha=alpha, text=text)

    def reg_loss(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cosine distance of the adapted [CLS] and text features to frozen CLIP's."""
        image_term = (1.0 - (out["f_cls"] * out["f_frozen"]).sum(-1)).mean()
        text_term = (1.0 - (out["text"] * self.text_frozen).sum(-1)).mean()
        return image_term + text_term

    @torch.no_grad()
    def predict(self, image: torch.Tensor, mode: str = "fusion") -> torch.Tensor:
        """``fusion``: fused logits; ``cls``: [CLS] logits only."""
        out = self(image)
        return out["logits_cls"] if mode == "cls" else out["logits"]

    def summary(self) -> list[str]:
        names = ("cls",) + self.learner.attributes
        return ["fusion weights: " + ", ".join(f"{n}={a:.3f}" for n, a in zip(names, self.learner.alpha.tolist()))]

    def explain(self, out: dict[str, torch.Tensor], index: int) -> list[str]:
        """Per path ([CLS], then each attribute token): its fusion weight and its own top-1 class."""
        names = ("cls",) + self.learner.attributes
        logits = [out["logits_cls"][index]] + list(out["logits_attr"][index])
        return ["per path: " + "; ".join(f"{n} (alpha {a:.3f}) -> {self.classnames[int(lg.argmax())]}"
                                         for n, a, lg in zip(names, out["alpha"].tolist(), logits))]


@TRAINER_REGISTRY.register()
class DeAR(PromptTrainer):
    """DeAR as a Dassl trainer: CE on the fused logits + L_reg + L_fusion."""

    Settings = DeARSettings

    @classmethod
    def make_model(cls, cfg, clip_model, settings: DeARSettings | None = None, classnames=None) -> DeARModel:
        s = settings or cls.Settings.from_cfg(cfg)
        roles = load_roles(s.ROLES_FILE or cfg.MODEL.BACKBONE.NAME)
        if s.ATTRIBUTES:
            roles = roles.with_attributes(s.ATTRIBUTES)
        print(f"Head roles: {roles.source} (digest {roles.digest[:12]}, mask={s.MASK}, "
              f"attributes {', '.join(roles.core_attributes)})")
        return DeARModel(clip_model, roles, s)

    def param_groups(self) -> list[dict] | None:
        mult = self.settings.FUSION_LR_MULT
        if mult == 1.0:
            return None  # one group, as in the paper
        fusion = self.learner.fusion_weights
        others = [p for p in self.learner.parameters() if p is not fusion]
        return [{"params": others}, {"params": [fusion], "lr": self.cfg.OPTIM.LR * mult}]

    def train_outputs(self, image, label):
        return self.model(image, with_frozen=self.settings.LAMBDA_REG > 0)

    def loss_terms(self, out, label):
        s = self.settings
        reg = self.model.reg_loss(out) if s.LAMBDA_REG > 0 else torch.zeros((), device=label.device)
        return {"ce": (1.0, F.cross_entropy(out["logits"].float(), label)), "reg": (s.LAMBDA_REG, reg),
                "fusion": (s.LAMBDA_FUSION, -torch.log(out["alpha"][0]))}

    def log_values(self, out):
        names = ("cls",) + self.model.learner.attributes
        return {f"alpha_{n}": a for n, a in zip(names, out["alpha"].tolist())}

    def inference_mode(self) -> str:
        mode = self.settings.INFERENCE
        if mode == "decoupled":
            return "cls" if self.cfg.DATASET.SUBSAMPLE_CLASSES == "new" else "fusion"
        return mode
