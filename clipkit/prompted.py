"""What every prompted CLIP shares: a learner (the only trained and saved state) and frozen CLIP around it.

A method is a :class:`Learner` (its parameters, and ``forward() -> {name: tensor}``, the tokens and weights
the towers take) plus a :class:`PromptedCLIP` subclass that says where those tokens enter the towers
(:mod:`clipkit.surgery`) and returns named outputs. This module gives them:
- the learner's *identity* (trainer, backbone shape, every setting that changes the model, head roles),
  stored in its state dict and checked by ``load_state_dict`` itself, so evaluation, resume and ``predict``
  all refuse a checkpoint made with another model, naming the key that differs;
- class handling: ``set_classes`` once per class set (tokenise, cut, frozen features), and an evaluation
  cache of the adapted class text features that is recomputed only when the classes or the learner's
  parameters change (tensor versions), so no trainer re-encodes prompts per test batch.
"""
from __future__ import annotations

import json
from typing import Any, ClassVar, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .loader import describe_backbone
from .surgery import TextTower, VisionTower


class LearnerMismatch(ValueError):
    """A checkpoint was made with another model (settings, roles or backbone) than the one loading it."""


def _encode(identity: dict[str, Any]) -> torch.Tensor:
    return torch.tensor(list(json.dumps(identity, sort_keys=True).encode()), dtype=torch.uint8)


def _decode(code: torch.Tensor) -> dict[str, Any]:
    return json.loads(bytes(code.cpu().tolist()).decode())


def backbone_identity(clip_model) -> dict[str, Any]:
    """Shape facts of the CLIP a learner was made for (ViT or ResNet)."""
    info = {"text_layers": clip_model.transformer.layers, "text_width": clip_model.transformer.width,
            "embed_dim": int(clip_model.text_projection.shape[1])}
    if hasattr(clip_model.visual, "transformer"):
        b = describe_backbone(clip_model)
        info.update(vision="ViT", layers=b["layers"], heads=b["heads"], width=b["width"])
    else:
        info.update(vision=type(clip_model.visual).__name__, width=int(clip_model.visual.attnpool.c_proj.in_features))
    return info


class Learner(nn.Module):
    """Everything a method learns. ``identity`` (a JSON-able dict) is saved with the weights and checked on load.

    Subclasses create their parameters in ``__init__`` and return the tensors the model consumes from
    ``forward()`` (so one wrapper, e.g. DDP, sees every use of every parameter).
    """

    def __init__(self, identity: dict[str, Any]) -> None:
        super().__init__()
        self.register_buffer("identity", _encode(identity))

    def identity_dict(self) -> dict[str, Any]:
        return _decode(self.identity)

    def forward(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def check_identity(self, state_dict: dict[str, Any], where: str = "the checkpoint") -> None:
        """Raise :class:`LearnerMismatch` naming every setting where ``state_dict`` differs from this learner."""
        ours = self.identity_dict()
        if "identity" not in state_dict:
            raise LearnerMismatch(f"{where} has no learner identity: it was not written by this project's "
                                  f"{ours.get('trainer', '')} trainer (or by an older version of it)")
        try:
            theirs = _decode(state_dict["identity"])
        except (ValueError, TypeError, AttributeError):
            raise LearnerMismatch(f"{where} has an unreadable learner identity: it is corrupt or not a checkpoint "
                                  "of this project; delete it and train again") from None
        diffs = [f"{k}: {theirs.get(k, '<absent>')!r} in the checkpoint, {ours.get(k, '<absent>')!r} here"
                 for k in sorted(set(ours) | set(theirs)) if ours.get(k) != theirs.get(k)]
        if diffs:
            raise LearnerMismatch(f"{where} was made with another model than this run: " + "; ".join(diffs)
                                  + ". Use the same settings as for training (the run's config.yaml has them).")

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # noqa: D102
        self.check_identity(state_dict)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


class PromptedCLIP(nn.Module):
    """Frozen CLIP (held by reference, never trained or saved) and a :class:`Learner`.

    Subclasses implement ``prepare_classes`` (what depends only on the class set), ``text_features``
    (adapted class features, normalised) and ``forward`` (named outputs with at least ``logits``).
    ``INFERENCE_MODES`` lists the modes ``predict`` accepts; the first is the default.
    """

    INFERENCE_MODES: ClassVar[tuple[str, ...]] = ("default",)

    def __init__(self, clip_model, learner: Learner | None) -> None:
        super().__init__()
        self.clip = clip_model
        self.vision = VisionTower(clip_model) if hasattr(clip_model.visual, "transformer") else None
        self.text = TextTower(clip_model)
        self.learner = learner
        self.classnames: tuple[str, ...] = ()
        self.template = ""
        self._text_cache: tuple[tuple, torch.Tensor] | None = None

    # -- masks -------------------------------------------------------------------------------------------
    def register_masks(self, masks: Sequence[torch.Tensor | None]) -> None:
        """Keep per-block attention masks (``None``: no mask) as buffers, so they move with the model."""
        self._mask_names = []
        for i, m in enumerate(masks):
            name = None
            if m is not None:
                name = f"block_mask_{i}"
                self.register_buffer(name, m, persistent=False)
            self._mask_names.append(name)

    @property
    def masks(self) -> list[torch.Tensor | None]:
        return [getattr(self, n) if n is not None else None for n in getattr(self, "_mask_names", [])]

    # -- classes -----------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.clip.logit_scale.device

    def set_classes(self, classnames: Sequence[str], template: str) -> None:
        """Prepare the class set (no-op when it is unchanged)."""
        classnames = tuple(classnames)
        if classnames == self.classnames and template == self.template:
            return
        self.classnames, self.template = classnames, template
        self._text_cache = None
        with torch.no_grad():
            self.prepare_classes(list(classnames), template)

    def prepare_classes(self, classnames: list[str], template: str) -> None:
        raise NotImplementedError

    def text_features(self, prompts: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Adapted class text features, L2-normalised: ``[C, E]``. ``prompts`` is the learner's output of
        this step when the caller already has it (one learner call per step), else the model calls it."""
        raise NotImplementedError

    def learner_outputs(self, *args) -> dict[str, torch.Tensor]:
        """The learner's forward (its tokens and weights for this step). Models call this, once per step, rather
        than reading parameters, so a wrapper installed with :meth:`wrap_learner` (e.g. DDP) sees every use."""
        call = self.__dict__.get("_learner_call") or self.learner
        return call(*args)

    def wrap_learner(self, wrapper: nn.Module | None) -> None:
        """Call the learner through ``wrapper`` (e.g. ``DistributedDataParallel(learner)``); ``None`` undoes it.
        The wrapper is not a submodule: checkpoints and ``state_dict`` keep the learner's own names."""
        self.__dict__["_learner_call"] = wrapper

    def class_text(self, prompts: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """:meth:`text_features`, cached while evaluating (no grad, eval mode) until the classes or the
        learner's parameters change."""
        if self.training or torch.is_grad_enabled():
            return self.text_features(prompts)
        params = tuple(self.learner.parameters()) if self.learner is not None else ()
        key = (self.classnames, self.template, torch.is_autocast_enabled(),
               tuple((id(p), p._version) for p in params))
        if self._text_cache is None or self._text_cache[0] != key:
            self._text_cache = (key, self.text_features(prompts))
        return self._text_cache[1]

    # -- outputs -----------------------------------------------------------------------------------------
    @torch.no_grad()
    def frozen_image_features(self, image: torch.Tensor) -> torch.Tensor:
        """Frozen CLIP's image features ``[B, E]``, L2-normalised (ViT through the patched blocks)."""
        feats = self.vision(image) if self.vision is not None else self.clip.encode_image(image)
        return self.normalize(feats)

    def logits(self, image_features: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """``logit_scale * image @ text.T`` for normalised features ``[..., E]`` and ``[C, E]``."""
        return self.clip.logit_scale.exp() * image_features @ text.t()

    @staticmethod
    def normalize(x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x.float(), dim=-1)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    @torch.no_grad()
    def predict(self, image: torch.Tensor, mode: str = "default") -> torch.Tensor:
        """Logits ``[B, C]`` in inference ``mode``."""
        return self(image)["logits"]

    def summary(self) -> list[str]:
        """Lines about the trained model as a whole (e.g. DeAR's fusion weights), printed by ``predict``."""
        return []

    def explain(self, out: dict[str, torch.Tensor], index: int) -> list[str]:
        """Lines describing how sample ``index`` of ``out`` was predicted (``python -m trainers.predict``)."""
        return []


def init_context(clip_model, ctx_init: str, n_ctx: int, shape: tuple[int, ...], rule: str = "coop",
                 ) -> tuple[torch.Tensor, int, str]:
    """Initial context vectors, their number, and the prompt prefix text they stand for.

    ``rule="coop"`` (CoOp, CoCoOp): with ``ctx_init`` the context is the embeddings of its first tokens and
    ``n_ctx`` its word count. ``rule="ivlp"`` (IVLP, MaPLe, PromptSRC): ``ctx_init`` is used only when
    ``n_ctx <= 4``, and then ``n_ctx`` stays (the first ``n_ctx`` tokens; the rest of ``ctx_init`` stays in the
    prompt as fixed words). Otherwise ``N(0, 0.02)`` of ``shape`` (ending with ``[n_ctx, width]``) and
    placeholder words. The prefix text is ``ctx_init`` or ``""`` (placeholders).
    """
    from .prompts import tokenize

    ctx_init = ctx_init.replace("_", " ")
    use_init = bool(ctx_init) and (rule == "coop" or n_ctx <= 4)
    if use_init:
        if rule == "coop":
            n_ctx = len(ctx_init.split(" "))
        with torch.no_grad():
            ids = tokenize([ctx_init], clip_model.context_length).to(clip_model.token_embedding.weight.device)
            return clip_model.token_embedding(ids)[0, 1:1 + n_ctx].detach().clone().cpu(), n_ctx, ctx_init
    ctx = torch.empty(*shape)
    nn.init.normal_(ctx, std=0.02)
    return ctx, n_ctx, ""


class ContextText(nn.Module):
    """Class prompts with learnable-context slots (:func:`clipkit.prompts.context_prompts`), ready for the text
    tower: frozen token embeddings + positions per class set, and the splice of the context vectors.

    ``sequences(ctx)`` returns the rows every class shares ``p: [G, P, D]`` and the per-class rows
    ``s: [G*C, S, D]`` for :meth:`clipkit.surgery.TextTower.run_prefixed`. ``ctx`` is ``[n, D]`` (one
    context), ``[C, n, D]`` (class-specific, ``per="class"``) or ``[B, n, D]`` (one per image, CoCoOp,
    ``per="image"``: ``G = B``). The positional embedding is added to the context as CLIP adds it to
    every token, so the sequences equal the official ``cat(prefix, ctx, suffix) + positional_embedding``.
    """

    def __init__(self) -> None:
        super().__init__()
        for name in ("emb", "ctx_index", "eot", "pos"):
            self.register_buffer(name, torch.empty(0), persistent=False)
        self.shared = 1

    @torch.no_grad()
    def set(self, tower: TextTower, prompts) -> None:
        device = tower.token_embedding.weight.device
        prompts = prompts.to(device)
        self.emb = tower.embed(prompts.ids)  # [C, L, D], positions added
        self.ctx_index, self.eot, self.shared = prompts.ctx_index, prompts.eot, prompts.shared
        self.pos = tower.positional_embedding[: prompts.ids.shape[1]].detach()

    def _splice(self, emb: torch.Tensor, index: torch.Tensor, pos: torch.Tensor, ctx: torch.Tensor,
                per_row: bool) -> torch.Tensor:
        """``emb [R, L', D]`` with ``ctx`` (+ position) where ``index [R, L'] >= 0``."""
        idx = index.clamp(min=0)
        rows = torch.arange(idx.shape[0], device=idx.device)[:, None]
        gathered = ctx[rows, idx] if per_row else ctx[idx]  # [R, L', D]
        return torch.where((index >= 0)[..., None], gathered + pos.to(gathered.dtype), emb.to(gathered.dtype))

    def sequences(self, ctx: torch.Tensor, per: str = "shared") -> tuple[torch.Tensor, torch.Tensor]:
        n_p = self.shared
        in_s = bool((self.ctx_index[:, n_p:] >= 0).any())
        if per == "image":  # CoCoOp: the context sits in the shared rows; the rest is repeated per image
            if in_s:
                raise ValueError("per-image context must sit right after start-of-text (class token position 'end')")
            b = ctx.shape[0]
            index = self.ctx_index[:1, :n_p].expand(b, -1)
            p = self._splice(self.emb[:1, :n_p].expand(b, -1, -1), index, self.pos[:n_p], ctx, per_row=True)
            s = self.emb[:, n_p:].repeat(b, 1, 1)
            return p, s
        per_row = per == "class"
        if per_row:
            ctx_p = ctx[:1]
            p = self._splice(self.emb[:1, :n_p], self.ctx_index[:1, :n_p], self.pos[:n_p], ctx_p, per_row=True)
        else:
            p = self._splice(self.emb[:1, :n_p], self.ctx_index[:1, :n_p], self.pos[:n_p], ctx, per_row=False)
        s = self.emb[:, n_p:]
        if in_s:
            s = self._splice(s, self.ctx_index[:, n_p:], self.pos[n_p:], ctx, per_row=per_row)
        return p, s
