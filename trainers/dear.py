"""DeAR: attribute tokens routed per attention head by role, with task-adaptive fusion.

Reads top-down: config -> learnable state -> model (forward) -> trainer. Method element -> code:
- role-based mask (generalization isolated, attribute routing, mixed open): ``head_roles.role_mask``
- tokens at layers J..L with beta anchoring: ``clipkit.surgery.run_injected``
- f_cls / f_attr and the text path: ``DeARModel.image_features`` / ``DeARModel.text_features``
- fusion alpha = softmax(w), L_fusion = -log alpha_cls: ``DeARLearner.alpha`` / ``DeAR.forward_backward``
- L_reg (cosine to frozen CLIP): ``DeARModel.reg_loss``; inference modes: ``DeARModel.predict``
"""
from __future__ import annotations

import logging
import math
import os.path as osp

import torch
import torch.nn as nn
import torch.nn.functional as F
from dassl.engine import TRAINER_REGISTRY, TrainerX
from dassl.metrics import compute_accuracy
from dassl.optim import build_optimizer
from yacs.config import CfgNode as CN

from clipkit import load_clip, template_for
from clipkit.loader import describe_backbone
from clipkit.precision import PRECISIONS, PrecisionStep
from clipkit.surgery import TextTower, VisionTower, run_injected
from clipkit.text import class_prompts, encode_prompts, tokenize
from dasslite.compat import build_lr_scheduler
from head_roles import ABLATIONS, HeadRoles, RolesMismatch, ablate, load_roles, role_mask
from head_roles.masks import ATTR_INTERACTIONS

from .config import trainer_config

logger = logging.getLogger(__name__)

INFERENCE_MODES = ("fusion", "decoupled", "cls")


@trainer_config
def _dear_config(cfg) -> None:
    cfg.TRAINER.DEAR = CN()
    cfg.TRAINER.DEAR.ROLES_FILE = ""  # head-roles JSON; empty: head_roles/<backbone>.json (e.g. vit_b16.json)
    cfg.TRAINER.DEAR.INJECT_LAYER = 0  # J, counted from 1; 0: the first layer listed in the roles file
    cfg.TRAINER.DEAR.BETA = 0.9  # anchoring: beta * token(l) + (1 - beta) * output(l - 1)
    cfg.TRAINER.DEAR.N_TEXT_TOKENS = 5  # learnable text tokens per injected text layer (0: no text tokens)
    cfg.TRAINER.DEAR.TOKEN_INIT_STD = 0.02  # normal init of the attribute and text tokens
    cfg.TRAINER.DEAR.MASK = "role"  # role | none | generalization_only | random_shuffle | isolate_all
    cfg.TRAINER.DEAR.MASK_SEED = 0  # seed of the random_shuffle ablation
    cfg.TRAINER.DEAR.ATTR_INTERACTION = "self"  # self: attribute tokens do not see each other | all
    cfg.TRAINER.DEAR.FUSION_INIT_CLS = 0.7  # alpha_cls at initialisation (the rest split evenly)
    cfg.TRAINER.DEAR.LAMBDA_REG = 1.0  # weight of L_reg (cosine distance to frozen CLIP features)
    cfg.TRAINER.DEAR.LAMBDA_FUSION = 0.7  # weight of L_fusion = -log(alpha_cls)
    cfg.TRAINER.DEAR.INFERENCE = "fusion"  # fusion | decoupled (fusion on base, [CLS] on new) | cls
    cfg.TRAINER.DEAR.PREC = "amp"  # fp32 | bf16 | amp (fp16 autocast + scaler on CUDA; fp32 on CPU)


class DeARLearner(nn.Module):
    """Everything DeAR learns (the only state a checkpoint holds), plus the identity of the roles used."""

    def __init__(self, clip_model, roles: HeadRoles, n_layers: int, n_text_tokens: int, init_std: float,
                 fusion_init_cls: float) -> None:
        super().__init__()
        info = describe_backbone(clip_model)
        k = len(roles.core_attributes)
        self.attributes = tuple(roles.core_attributes)
        # one fresh token set per injected layer
        self.attribute_tokens = nn.Parameter(torch.randn(n_layers, k, info["width"]) * init_std)  # [J', K, Dv]
        self.text_tokens = nn.Parameter(torch.randn(n_layers, n_text_tokens, info["text_width"]) * init_std)
        self.attribute_proj = nn.Parameter(clip_model.visual.proj.detach().clone())  # [Dv, E]
        if not 0.0 < fusion_init_cls < 1.0:
            raise ValueError(f"TRAINER.DEAR.FUSION_INIT_CLS={fusion_init_cls} must be in (0, 1)")
        w = torch.zeros(k + 1)
        w[0] = math.log(fusion_init_cls / (1.0 - fusion_init_cls) * k)  # softmax(w)[0] == fusion_init_cls
        self.fusion_weights = nn.Parameter(w)  # [1 + K]: [CLS] first, then the attributes
        # identity, saved with the weights and checked on load
        self.register_buffer("role_codes", torch.tensor(roles.role_codes(), dtype=torch.long))
        self.register_buffer("backbone_shape", torch.tensor(
            [info["layers"], info["heads"], info["width"], info["embed_dim"]], dtype=torch.long))

    @property
    def alpha(self) -> torch.Tensor:
        """Fusion weights ``[1 + K]`` (softmax), [CLS] first."""
        return self.fusion_weights.softmax(dim=0)


class DeARModel(nn.Module):
    """Frozen CLIP (by reference) + :class:`DeARLearner`; returns named outputs."""

    def __init__(self, clip_model, roles: HeadRoles, cfg_dear) -> None:
        super().__init__()
        self.clip = clip_model
        self.vision = VisionTower(clip_model)
        self.text = TextTower(clip_model)
        info = describe_backbone(clip_model)
        roles.check_backbone(info["layers"], info["heads"], info["width"])
        self.start = (cfg_dear.INJECT_LAYER or roles.first_layer) - 1  # 0-based index of the first injected block
        if not 0 <= self.start < info["layers"]:
            raise ValueError(f"TRAINER.DEAR.INJECT_LAYER={cfg_dear.INJECT_LAYER} is outside 1..{info['layers']}")
        injected = list(range(self.start + 1, info["layers"] + 1))  # 1-based layers with tokens
        n_inj = len(injected)
        self.text_start = info["text_layers"] - n_inj  # the text encoder gets the same number of deep layers
        if self.text_start < 0:
            raise ValueError(f"the text encoder has {info['text_layers']} layers, fewer than the {n_inj} injected")
        self.beta = cfg_dear.BETA
        self.n_text_tokens = cfg_dear.N_TEXT_TOKENS
        masked = ablate(roles, cfg_dear.MASK, cfg_dear.MASK_SEED)  # the roles the masks are built from
        self.learner = DeARLearner(clip_model, masked, n_inj, cfg_dear.N_TEXT_TOKENS, cfg_dear.TOKEN_INIT_STD,
                                   cfg_dear.FUSION_INIT_CLS)
        n_orig = self.vision.num_tokens
        masks = []
        for layer in injected:
            if layer in masked.layers:
                masks.append(role_mask(masked.layer(layer), roles.core_attributes, n_orig,
                                       cfg_dear.ATTR_INTERACTION))
            else:  # a layer the roles file does not cover: open, as if all its heads were mixed
                masks.append(torch.zeros(info["heads"], n_orig + len(roles.core_attributes),
                                         n_orig + len(roles.core_attributes)))
        self.register_buffer("role_masks", torch.stack(masks), persistent=False)  # [J', H, L, L]
        self.register_buffer("text_ids", torch.empty(0, dtype=torch.long), persistent=False)  # [C, 77]
        self.register_buffer("text_prefix", torch.empty(0), persistent=False)  # [C, 77, Dt] after layers < J
        self.register_buffer("text_frozen", torch.empty(0), persistent=False)  # [C, E] frozen CLIP, normalised
        self.register_buffer("text_cached", torch.empty(0), persistent=False)  # [C, E] adapted, for evaluation

    # -- classes ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def set_classes(self, prompts: list[str]) -> None:
        """Tokenise the class prompts and cache what does not change: the text prefix and frozen features."""
        device = self.learner.fusion_weights.device
        ids = tokenize(prompts, self.clip.context_length).to(device)
        # causal attention: nothing after the last end-of-text token can change any end-of-text feature,
        # so the padding is dropped (exact; ~5x less text compute for CoOp-style prompts)
        self.text_ids = ids[:, : int(ids.argmax(dim=-1).max()) + 1]
        self.text_prefix = self.text.prefix(self.text_ids, self.text_start)
        self.text_frozen = F.normalize(encode_prompts(self.clip, prompts, device), dim=-1)
        self.text_cached = torch.empty(0, device=device)

    @torch.no_grad()
    def cache_text_features(self) -> None:
        """Compute the adapted text features once (evaluation: they do not depend on the image)."""
        self.text_cached = self.text_features()

    def text_features(self) -> torch.Tensor:
        """Adapted, normalised class text features ``[C, E]``."""
        if self.text_ids.numel() == 0:
            raise RuntimeError("call set_classes() first")
        if self.n_text_tokens == 0:
            return self.text_frozen
        feats = self.text.deep_with_tokens(self.text_prefix, self.text_ids, self.text_start,
                                           list(self.learner.text_tokens), self.beta)
        return F.normalize(feats.float(), dim=-1)

    # -- image ------------------------------------------------------------------------------------------
    def image_features(self, image: torch.Tensor, with_frozen: bool = False) -> dict[str, torch.Tensor]:
        """``f_cls [B, E]``, ``f_attr [B, K, E]`` (normalised) and, if asked, frozen CLIP's ``f_frozen``."""
        with torch.no_grad():  # layers before J carry no learnable state: run once, share with the frozen path
            prefix = self.vision.prefix(image, self.start)  # [B, N, Dv]
        # the last block computes only [CLS] and the attribute tokens: nothing else is read (exact); the
        # frozen path shares the prefix and layer J's attention over the original tokens (exact)
        out = run_injected(self.vision.blocks[self.start:], prefix, list(self.learner.attribute_tokens),
                           insert_at=prefix.shape[1], beta=self.beta, masks=list(self.role_masks), keep_first=True,
                           with_stock=with_frozen)
        f_cls = self.vision.project(out.x[:, 0])
        f_attr = self.vision.visual.ln_post(out.tokens) @ self.learner.attribute_proj.to(out.x.dtype)
        feats = {"f_cls": F.normalize(f_cls.float(), dim=-1), "f_attr": F.normalize(f_attr.float(), dim=-1)}
        if with_frozen:
            with torch.no_grad():
                feats["f_frozen"] = F.normalize(self.vision.project(out.frozen[:, 0]).float(), dim=-1)
        return feats

    # -- logits -----------------------------------------------------------------------------------------
    def forward(self, image: torch.Tensor, with_frozen: bool = False) -> dict[str, torch.Tensor]:
        """Named outputs: ``logits`` (fused) ``[B, C]``, ``logits_cls`` ``[B, C]``, ``logits_attr``
        ``[B, K, C]``, ``alpha`` ``[1 + K]``, the features, and ``text`` ``[C, E]``."""
        feats = self.image_features(image, with_frozen)
        text = self.text_cached if (not self.training and self.text_cached.numel()) else self.text_features()
        scale = self.clip.logit_scale.exp()
        logits_cls = scale * feats["f_cls"] @ text.t()  # [B, C]
        logits_attr = scale * torch.einsum("bke,ce->bkc", feats["f_attr"], text)  # [B, K, C]
        alpha = self.learner.alpha
        fused = alpha[0] * logits_cls + torch.einsum("k,bkc->bc", alpha[1:], logits_attr)
        return dict(feats, logits=fused, logits_cls=logits_cls, logits_attr=logits_attr, alpha=alpha, text=text)

    def reg_loss(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cosine distance of the adapted [CLS] and text features to frozen CLIP's."""
        image_term = (1.0 - (out["f_cls"] * out["f_frozen"]).sum(-1)).mean()
        text_term = (1.0 - (out["text"] * self.text_frozen).sum(-1)).mean()
        return image_term + text_term

    @torch.no_grad()
    def predict(self, image: torch.Tensor, mode: str) -> torch.Tensor:
        """``fusion``: fused logits; ``cls``: [CLS] logits only."""
        out = self(image)
        return out["logits_cls"] if mode == "cls" else out["logits"]


@TRAINER_REGISTRY.register()
class DeAR(TrainerX):
    """DeAR as a Dassl trainer; only :class:`DeARLearner` is registered, optimised and saved."""

    def check_cfg(self, cfg) -> None:
        c = cfg.TRAINER.DEAR
        checks = [("MASK", c.MASK, ABLATIONS), ("INFERENCE", c.INFERENCE, INFERENCE_MODES),
                  ("PREC", c.PREC, PRECISIONS), ("ATTR_INTERACTION", c.ATTR_INTERACTION, ATTR_INTERACTIONS)]
        for key, value, allowed in checks:
            if value not in allowed:
                raise ValueError(f"TRAINER.DEAR.{key}={value!r} is not supported; choose one of {list(allowed)}")
        if not 0.0 <= c.BETA <= 1.0:
            raise ValueError(f"TRAINER.DEAR.BETA={c.BETA} must be in [0, 1]")
        if c.LAMBDA_REG < 0 or c.LAMBDA_FUSION < 0:
            raise ValueError("TRAINER.DEAR.LAMBDA_REG and LAMBDA_FUSION must be >= 0")
        if c.N_TEXT_TOKENS < 0:
            raise ValueError("TRAINER.DEAR.N_TEXT_TOKENS must be >= 0")

    def build_model(self) -> None:
        cfg = self.cfg
        c = cfg.TRAINER.DEAR
        clip_model = load_clip(cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.PATH, self.device)
        self.roles = load_roles(c.ROLES_FILE or cfg.MODEL.BACKBONE.NAME)
        print(f"Head roles: {self.roles.source} (digest {self.roles.digest[:12]}, mask={c.MASK})")
        self.model = DeARModel(clip_model, self.roles, c).to(self.device)
        learner = self.model.learner
        trainable = [n for n, p in self.model.named_parameters() if p.requires_grad]
        expected = {f"learner.{n}" for n, _ in learner.named_parameters()}
        if set(trainable) != expected:
            raise RuntimeError(f"unexpected trainable parameters: {sorted(set(trainable) ^ expected)}")
        n_params = sum(p.numel() for p in learner.parameters())
        print(f"Trainable parameters ({n_params:,}): {', '.join(sorted(trainable))}")
        self.template = template_for(cfg.DATASET.NAME, cfg.DATASET.PROMPT_TEMPLATE)
        self.model.set_classes(class_prompts(self.dm.dataset.classnames, self.template))
        self.optim = build_optimizer(learner, cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, cfg.OPTIM)
        self.register_model("prompt_learner", learner, self.optim, self.sched)
        self.step = PrecisionStep(c.PREC, self.device)
        print(f"Precision: {self.step.precision} (requested {c.PREC})")

    def parse_batch_train(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def forward_backward(self, batch) -> dict[str, float]:
        c = self.cfg.TRAINER.DEAR
        image, label = self.parse_batch_train(batch)
        with self.step.autocast():
            out = self.model(image, with_frozen=c.LAMBDA_REG > 0)
            loss_ce = F.cross_entropy(out["logits"].float(), label)
            loss_fusion = -torch.log(out["alpha"][0])
            loss_reg = self.model.reg_loss(out) if c.LAMBDA_REG > 0 else torch.zeros((), device=image.device)
            loss = loss_ce + c.LAMBDA_REG * loss_reg + c.LAMBDA_FUSION * loss_fusion
        self.step.backward_and_update(loss, self.optim)
        summary = {"loss": loss.item(), "loss_ce": loss_ce.item(), "loss_reg": loss_reg.item(),
                   "loss_fusion": loss_fusion.item(), "acc": compute_accuracy(out["logits"], label)[0].item()}
        for name, a in zip(("cls",) + self.model.learner.attributes, out["alpha"].tolist()):
            summary[f"alpha_{name}"] = a
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return summary

    def inference_mode(self) -> str:
        mode = self.cfg.TRAINER.DEAR.INFERENCE
        if mode == "decoupled":
            return "cls" if self.cfg.DATASET.SUBSAMPLE_CLASSES == "new" else "fusion"
        return mode

    def test(self, split=None):
        self.model.eval()
        self.model.set_classes(class_prompts([self.lab2cname[i] for i in range(self.num_classes)], self.template))
        self.model.cache_text_features()  # once per evaluation, not per batch
        print(f"Inference: {self.inference_mode()} (TRAINER.DEAR.INFERENCE={self.cfg.TRAINER.DEAR.INFERENCE})")
        return super().test(split)

    def model_inference(self, input: torch.Tensor) -> torch.Tensor:
        with self.step.autocast():
            return self.model.predict(input, self.inference_mode()).float()

    def set_model_mode(self, mode: str = "train", names=None) -> None:
        super().set_model_mode(mode, names)
        self.model.train(mode == "train")
        self.model.clip.eval()  # frozen CLIP always in eval mode

    def load_model(self, directory: str, epoch: int | None = None) -> None:
        """Load trainable state, refusing a checkpoint made with other head roles or another backbone."""
        if not directory:
            print("Note that load_model() is skipped as no pretrained model is given")
            return
        model_file = "model-best.pth.tar" if epoch is None else f"model.pth.tar-{epoch}"
        path = osp.join(directory, "prompt_learner", model_file)
        hint = (f"roles file {self.roles.source}, MASK={self.cfg.TRAINER.DEAR.MASK}; use the same "
                "MODEL.BACKBONE.NAME and TRAINER.DEAR.ROLES_FILE/MASK as for training")
        epoch_loaded = load_learner(self.model.learner, path, hint)
        print(f"Loaded {path} (epoch={epoch_loaded})")


def load_learner(learner: DeARLearner, path: str, hint: str = "") -> int:
    """Load a DeAR checkpoint into ``learner`` after checking its roles and backbone; return its epoch."""
    if not osp.exists(path):
        raise FileNotFoundError(f'Model not found at "{path}" (check --model-dir and --load-epoch)')
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain data only
    state = checkpoint["state_dict"]
    for key, what in (("backbone_shape", "backbone (layers, heads, width, embed)"), ("role_codes", "head roles")):
        if key not in state:
            raise RolesMismatch(f"{path} has no {key}: it was not written by the DeAR trainer")
        if not torch.equal(state[key].cpu(), getattr(learner, key).cpu()):
            raise RolesMismatch(f"{path} was trained with other {what} than this run ({hint}).")
    learner.load_state_dict(state)
    return checkpoint["epoch"]
