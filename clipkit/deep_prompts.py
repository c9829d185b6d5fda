"""Deep vision-language prompts as IVLP, MaPLe and PromptSRC place them, for any learner that makes them.

Text tower: ``n_t`` context vectors right after start-of-text, spliced into the token embeddings before the
positional embedding (layer 0, CoOp's way), then *replaced* by new vectors before each of the layers
``1 .. depth_t - 1`` and carried by the blocks after. Vision tower: ``n_v`` prompts appended after the patch
tokens before ``ln_pre`` (layer 0), replaced before layers ``1 .. depth_v - 1``, carried after; ``depth_v = 0``
leaves the image encoder stock. The learner returns the prompts per layer, layer 0 first:
``{"text": [depth_t x [n_t, Dt]], "vision": [depth_v x [n_v, Dv]]}``; how they are produced (independent
parameters, or MaPLe's projections of the text prompts) is the method's business.

With head roles (``clipkit.routing``), each vision block can take a per-head mask over the original tokens
and the prompts, so that the prompts only reach the heads their roles allow.

Exactness and cost: the text rows every class shares (start-of-text and the context) run once, prompts are
cut after their end-of-text token, the last blocks compute only the rows that are read ([CLS], end-of-text),
and with ``with_frozen`` the stock image forward shares the first block's attention over the original tokens
(``ln_pre`` is per token, so appending prompts before or after it is the same).
"""
from __future__ import annotations

import torch

from .prompted import ContextText, Learner, PromptedCLIP
from .prompts import context_prompts
from .surgery import run_injected


class DeepPromptCLIP(PromptedCLIP):
    """Frozen CLIP with deep prompts in both towers; named outputs ``logits``, ``f_image``, ``text``."""

    def __init__(self, clip_model, learner: Learner, n_ctx_text: int, depth_text: int, n_ctx_vision: int,
                 depth_vision: int, prompt_prefix: str = "", vision_masks: list | None = None) -> None:
        super().__init__(clip_model, learner)
        text_layers = clip_model.transformer.layers
        vision_layers = clip_model.visual.transformer.layers if self.vision is not None else 0
        if not 1 <= depth_text <= text_layers:
            raise ValueError(f"text prompt depth {depth_text} must be in 1..{text_layers} (the text layers)")
        if not 0 <= depth_vision <= vision_layers:
            raise ValueError(f"vision prompt depth {depth_vision} must be in 0..{vision_layers} (the vision layers)")
        if depth_vision and self.vision is None:
            raise ValueError("vision prompts need a ViT image encoder")
        self.n_ctx_text, self.depth_text = n_ctx_text, depth_text
        self.n_ctx_vision, self.depth_vision = n_ctx_vision, depth_vision
        self.prompt_prefix = prompt_prefix
        self.prompts = ContextText()
        # per vision block: the head-role mask over [originals, prompts] (None: all heads open)
        self.register_masks(vision_masks if vision_masks is not None else [None] * vision_layers)

    def prepare_classes(self, classnames, template) -> None:
        self.prompts.set(self.text, context_prompts(classnames, self.n_ctx_text, self.clip.context_length,
                                                    self.prompt_prefix))

    def text_features(self, prompts=None) -> torch.Tensor:
        prompts = prompts if prompts is not None else self.learner_outputs()
        layers = list(prompts["text"])
        p, s = self.prompts.sequences(layers[0])
        tokens = [None] + layers[1:] + [None] * (len(self.text.blocks) - len(layers))
        return self.normalize(self.text.run_prefixed(p, s, self.prompts.eot, tokens=tokens, present=True))

    def image_features(self, image: torch.Tensor, prompts: dict, with_frozen: bool = False,
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Adapted [CLS] features ``[B, E]`` and, if asked, stock CLIP's (no grad), both normalised."""
        if self.depth_vision == 0:
            f = self.frozen_image_features(image)
            return f, (f if with_frozen else None)
        with torch.no_grad():
            x = self.vision.embed(image)  # [B, N, Dv], after ln_pre
        layers = list(prompts["vision"])
        tokens = [self.vision.visual.ln_pre(layers[0])] + layers[1:]
        tokens += [None] * (len(self.vision.blocks) - len(tokens))
        out = run_injected(self.vision.blocks, x, tokens, insert_at=x.shape[1], beta=1.0, masks=self.masks,
                           cls_only=True, with_stock=with_frozen)
        f = self.normalize(self.vision.project(out.x[:, 0]))
        frozen = None
        if with_frozen:
            with torch.no_grad():
                frozen = self.normalize(self.vision.project(out.frozen[:, 0]))
        return f, frozen

    def forward(self, image: torch.Tensor, with_frozen: bool = False) -> dict[str, torch.Tensor]:
        prompts = self.learner_outputs()
        f, frozen = self.image_features(image, prompts, with_frozen)
        text = self.class_text(prompts)
        out = {"logits": self.logits(f, text), "f_image": f, "text": text}
        if with_frozen:
            out["f_frozen"] = frozen
        return out
