"""The Dassl trainer every prompted-CLIP method of this project is: a ``TrainerX`` with a fixed contract.

A method subclasses :class:`PromptTrainer` and provides
- ``Settings``: its config node (:class:`clipkit.config.Settings`), validated in ``check_cfg``;
- ``make_model(cfg, clip_model, settings)``: a :class:`clipkit.prompted.PromptedCLIP` (classmethod, so
  ``predict``, figures, benchmarks and tests build models exactly as training does);
- ``loss_terms(out, label)`` when the loss is more than cross-entropy on ``out["logits"]``;
- optionally ``inference_mode()`` and ``end_of_epoch()``.
Everything else is here, once: CLIP loading, the trainable-set check, optimizer and scheduler, precision,
logging every loss term, evaluation with cached class text, learner-only checkpoints with identity.

It imports only ``dassl.*`` and this package, so it runs on the real Dassl.pytorch and on the built-in
engine alike, and a trainer file built on it drops into a CoOp-family checkout.
"""
from __future__ import annotations

import logging
import os.path as osp
from typing import Any, ClassVar, Sequence

import torch
import torch.nn.functional as F
from dassl.engine import TrainerX
from dassl.metrics import compute_accuracy
from dassl.optim import build_optimizer

from .config import ConfigError, Settings
from .loader import load_clip
from .precision import PrecisionStep
from .prompted import PromptedCLIP
from .templates import template_for

logger = logging.getLogger(__name__)

LEARNER_NAME = "prompt_learner"  # the registered model name: checkpoints live in <output>/prompt_learner/
_SCHEDULER_NOTE_SHOWN = False


def build_lr_scheduler(optimizer, optim_cfg):
    """``dassl.optim.build_lr_scheduler``, or the built-in equivalent where Dassl's fails.

    Dassl 0.6.3's warm-up schedulers pass ``verbose`` positionally to ``LRScheduler.__init__``, which
    PyTorch >= 2.7 rejects (``TypeError: ... positional arguments``). The built-in schedulers have the same
    semantics (warm-up epochs, then the main schedule from epoch 0). Said once per process, in the log.
    """
    global _SCHEDULER_NOTE_SHOWN
    from dassl.optim import build_lr_scheduler as dassl_build

    try:
        return dassl_build(optimizer, optim_cfg)
    except TypeError as e:
        if "positional argument" not in str(e):
            raise
        from dasslite.optim.lr_scheduler import build_lr_scheduler as builtin_build

        if not _SCHEDULER_NOTE_SHOWN:
            print(f"Note: Dassl's build_lr_scheduler fails with PyTorch {torch.__version__} ({e}); using the "
                  "built-in scheduler with the same semantics (dasslite.optim.lr_scheduler)")
            _SCHEDULER_NOTE_SHOWN = True
        return builtin_build(optimizer, optim_cfg)


class PromptTrainer(TrainerX):
    """Dassl's ``TrainerX`` for a prompted CLIP; only the model's learner is trained, optimised and saved.

    Order of construction (Dassl's): ``check_cfg`` -> ``build_data_loader`` -> ``build_model`` ->
    ``build_evaluator``. Subclasses override the hooks below; each docstring says what an override must do.
    """

    Settings: ClassVar[type[Settings]]
    model: PromptedCLIP

    # -- construction ------------------------------------------------------------------------------------
    def check_cfg(self, cfg) -> None:
        """Validate ``cfg.TRAINER.<NODE>`` into ``self.settings``; an override calls ``super()`` first."""
        self.settings = self.Settings.from_cfg(cfg)
        if cfg.OPTIM.LR <= 0:
            raise ConfigError(f"OPTIM.LR={cfg.OPTIM.LR} must be > 0")

    @classmethod
    def make_model(cls, cfg, clip_model, settings: Settings | None = None,
                   classnames: Sequence[str] | None = None) -> PromptedCLIP:
        """Build the method's model around ``clip_model`` from ``cfg`` (``settings`` defaults to
        ``cls.Settings.from_cfg(cfg)``). ``classnames`` are the training classes; only learners with
        class-specific parameters (CoOp's ``CSC``) may depend on them."""
        raise NotImplementedError

    def build_model(self) -> None:
        """Load CLIP, make the model, check that only the learner trains, set the training classes, and
        register the learner with its optimizer and scheduler. Overrides rarely need to change this."""
        cfg = self.cfg
        clip_model = load_clip(cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.PATH, self.device)
        check_input_size(cfg, clip_model)
        self.model = self.make_model(cfg, clip_model, self.settings, self.dm.dataset.classnames).to(self.device)
        self.learner = self.model.learner
        check_trainable(self.model)
        names = sorted(n for n, p in self.model.named_parameters() if p.requires_grad)
        n_params = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        print(f"Trainable parameters ({n_params:,}): {', '.join(names) if names else 'none'}")
        self.template = template_for(cfg.DATASET.NAME, cfg.DATASET.PROMPT_TEMPLATE)
        print(f"Prompt template: {self.template!r}")
        self.model.set_classes(self.dm.dataset.classnames, self.template)
        self.optim = self.sched = None
        if n_params:
            self.optim = build_optimizer(self.learner, cfg.OPTIM, param_groups=self.param_groups())
            self.sched = build_lr_scheduler(self.optim, cfg.OPTIM)
            self.register_model(LEARNER_NAME, self.learner, self.optim, self.sched)
        self.step = PrecisionStep(self.settings.PREC, self.device)
        print(f"Precision: {self.step.precision} (requested {self.settings.PREC})")

    def param_groups(self) -> list[dict] | None:
        """Optimizer parameter groups of the learner (e.g. another learning rate for some parameters), or
        ``None`` for one group with ``OPTIM.LR`` (Dassl's default)."""
        return None

    # -- training ----------------------------------------------------------------------------------------
    def parse_batch_train(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def train_outputs(self, image: torch.Tensor, label: torch.Tensor) -> dict[str, torch.Tensor]:
        """The model's named outputs for a training batch (inside autocast). Default: ``self.model(image)``."""
        return self.model(image)

    def loss_terms(self, out: dict[str, torch.Tensor], label: torch.Tensor) -> dict[str, tuple[float, torch.Tensor]]:
        """``{name: (weight, term)}``; the loss is their weighted sum and each term is logged as
        ``loss_<name>``. Default: cross-entropy on ``out["logits"]``."""
        return {"ce": (1.0, F.cross_entropy(out["logits"].float(), label))}

    def log_values(self, out: dict[str, torch.Tensor]) -> dict[str, float]:
        """Extra scalars to log per step (e.g. fusion weights)."""
        return {}

    def forward_backward(self, batch) -> dict[str, float]:
        image, label = self.parse_batch_train(batch)
        with self.step.autocast():
            out = self.train_outputs(image, label)
            terms = self.loss_terms(out, label)
            loss = sum(w * t for w, t in terms.values())
        self.step.backward_and_update(loss, self.optim)
        summary = {"loss": loss.item()}
        if len(terms) > 1 or "ce" not in terms:
            summary.update({f"loss_{n}": t.item() for n, (_, t) in terms.items()})
        summary["acc"] = compute_accuracy(out["logits"].float(), label)[0].item()
        summary.update(self.log_values(out))
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
            self.end_of_epoch()
        return summary

    def end_of_epoch(self) -> None:
        """Called after the last step of every epoch, after the lr update (e.g. PromptSRC's aggregation)."""

    # -- evaluation --------------------------------------------------------------------------------------
    def inference_mode(self) -> str:
        """The model's inference mode for this run (a member of ``INFERENCE_MODES``)."""
        return self.model.INFERENCE_MODES[0]

    def test(self, split=None):
        self.model.set_classes([self.lab2cname[i] for i in range(self.num_classes)], self.template)
        mode = self.inference_mode()
        if len(self.model.INFERENCE_MODES) > 1:
            print(f"Inference: {mode}")
        return super().test(split)

    def model_inference(self, input: torch.Tensor) -> torch.Tensor:
        with self.step.autocast():
            return self.model.predict(input, self.inference_mode()).float()

    def set_model_mode(self, mode: str = "train", names=None) -> None:
        super().set_model_mode(mode, names)
        self.model.train(mode == "train")
        self.model.clip.eval()  # frozen CLIP is always in eval mode

    # -- checkpoints -------------------------------------------------------------------------------------
    def load_model(self, directory: str, epoch: int | None = None) -> None:
        """Load the learner from ``<directory>/prompt_learner/``; its identity is checked on load."""
        if not directory:
            print("Note that load_model() is skipped as no pretrained model is given")
            return
        if self.learner is None or not any(True for _ in self.learner.parameters()):
            return  # nothing trainable (zero-shot CLIP)
        model_file = "model-best.pth.tar" if epoch is None else f"model.pth.tar-{epoch}"
        path = osp.join(directory, LEARNER_NAME, model_file)
        epoch_loaded = load_learner(self.learner, path)
        print(f"Loaded {path} (epoch={epoch_loaded})")

    def save_model(self, *args, **kwargs) -> None:
        if self.get_model_names():
            super().save_model(*args, **kwargs)

    # -- several processes (torchrun) ----------------------------------------------------------------------
    def distribute_models(self) -> None:
        """Only the learner goes into ``DistributedDataParallel``; frozen CLIP stays out. The model calls its
        learner through ``learner_outputs`` (once per step), which now goes through the wrapper; module names
        and checkpoints are unchanged. Called by the built-in engine under ``torchrun`` only."""
        if self.optim is None:
            return  # nothing trains (zero-shot CLIP): evaluation alone is sharded
        from dasslite.distributed import wrap_ddp

        self.model.wrap_learner(wrap_ddp(self.learner, self.device))


def check_input_size(cfg, clip_model) -> None:
    """A ViT's positional embedding fixes its input size: a mismatch is a config error, not a shape error."""
    visual = clip_model.visual
    res = getattr(visual, "input_resolution", None)
    if hasattr(visual, "transformer") and res is not None and tuple(cfg.INPUT.SIZE) != (res, res):
        raise ConfigError(f"INPUT.SIZE {tuple(cfg.INPUT.SIZE)} does not match the input resolution of the CLIP "
                          f"{cfg.MODEL.BACKBONE.PATH or cfg.MODEL.BACKBONE.NAME} ({res} px): set INPUT.SIZE "
                          f"({res}, {res})")


def check_trainable(model: PromptedCLIP) -> None:
    """Raise unless exactly the learner's parameters require grad (frozen CLIP never trains)."""
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    expected = {f"learner.{n}" for n, _ in model.learner.named_parameters()} if model.learner is not None else set()
    if trainable != expected:
        raise RuntimeError(f"unexpected trainable parameters: {sorted(trainable ^ expected)}; only the learner trains")


def load_learner(learner, path: str) -> Any:
    """Load a checkpoint file into ``learner`` (identity checked); return the epoch it was saved at."""
    from dasslite.utils.torchtools import load_checkpoint  # weights_only; names a truncated or crafted file

    if not osp.exists(path):
        raise FileNotFoundError(f'Model not found at "{path}" (check --model-dir and --load-epoch)')
    checkpoint = load_checkpoint(path)
    learner.check_identity(checkpoint["state_dict"], where=path)
    learner.load_state_dict(checkpoint["state_dict"])
    return checkpoint.get("epoch")
