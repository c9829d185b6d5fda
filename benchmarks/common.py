"""What the benchmark scripts share: timing (warm-up, alternating rounds, medians), peak memory, and every
trainer built from its official config as training builds it, without Dassl's data set.

A benchmark trainer (:func:`make_trainer`) is the registered trainer class with the attributes its
training step reads: ``cfg``, ``settings``, ``model`` (``make_model`` around a given CLIP, classes set),
``learner``, the optimizer and scheduler of ``cfg.OPTIM`` and the precision step. :func:`train_step` is
``PromptTrainer.forward_backward``'s computation (``train_outputs``, every ``loss_terms`` term, backward,
optimizer step), so a timing covers exactly what training runs (``tests/test_benchmarks.py`` checks it
against ``forward_backward`` of a trainer built by Dassl's ``build_trainer``).
"""
from __future__ import annotations

import os.path as osp
import resource
import statistics
import time
from typing import Any, Callable, Sequence

import torch

import dasslite

dasslite.use_dassl()  # `dassl` is the real Dassl.pytorch when installed, else the built-in engine

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

# registered trainer name -> its base-to-novel config (configs/<name>.yaml, the official hyper-parameters)
CONFIGS: dict[str, str] = {"ZeroshotCLIP": "zsclip", "CoOp": "coop", "CoCoOp": "cocoop", "IVLP": "ivlp",
                           "MaPLe": "maple", "PromptSRC": "promptsrc", "MMRL": "mmrl", "MMRLpp": "mmrlpp",
                           "DeAR": "dear"}
ALIASES = {"MMRL++": "MMRLpp", "ZSCLIP": "ZeroshotCLIP", "zsclip": "ZeroshotCLIP"}
DISPLAY = {"MMRLpp": "MMRL++", "ZeroshotCLIP": "zero-shot CLIP"}
PER_IMAGE_TEXT = {"CoCoOp"}  # class text depends on the image: encoded per image, nothing to cache


# -- timing ----------------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Wall seconds of one call, the device synchronised before and after."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def measure(fn: Callable[[], object], device: torch.device, reps: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds per call and peak memory (CUDA: allocated bytes; CPU: process max RSS) in MiB."""
    for _ in range(warmup):
        fn()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = [timed(fn, device) for _ in range(reps)]
    return {"seconds": statistics.median(times), "peak_mib": peak_mib(device)}


def flops(fn: Callable[[], object]) -> dict[str, int]:
    """Floating-point operations of one call of ``fn`` (forward and backward alike), counted at PyTorch's
    dispatcher by ``torch.utils.flop_counter``: matrix products, convolutions and attention, by operator,
    with ``"total"``. PyTorch's CPU flash-attention operators, which the stock counter leaves out, count as the
    attention they compute. A count of the computation, not of the machine: the same on any CPU or GPU."""
    from torch.utils import flop_counter as fc

    def attention(q, k, v, *args, out_shape=None, **kwargs) -> int:
        return fc.sdpa_flop_count(q, k, v)

    def attention_backward(grad_out, q, k, v, *args, out_shape=None, **kwargs) -> int:
        return fc.sdpa_backward_flop_count(grad_out, q, k, v)

    aten = torch.ops.aten
    extra = {}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        extra[aten._scaled_dot_product_flash_attention_for_cpu] = attention
        extra[aten._scaled_dot_product_flash_attention_for_cpu_backward] = attention_backward
    with fc.FlopCounterMode(display=False, custom_mapping=extra) as counter:
        fn()
    by_op = {str(op).split(".")[-1]: int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return {**by_op, "total": int(counter.get_total_flops())}


def peak_mib(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else peak_rss_mib()


def peak_rss_mib() -> float:
    """This process's peak resident memory. Linux's ``VmHWM`` belongs to the process image; ``ru_maxrss``
    (the fallback elsewhere) survives fork + exec, so a child would report its parent's peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def interleaved_samples(fns: dict[str, Callable[[], object]], device: torch.device, rounds: int,
                        progress: Callable[[str], None] | None = None) -> dict[str, list[float]]:
    """Seconds of every call of each function, timed in alternating rounds after one warm-up call each."""
    for name, fn in fns.items():
        fn()
        if progress:
            progress(f"warm-up {name}")
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(rounds):
        for name, fn in fns.items():
            times[name].append(timed(fn, device))
        if progress:
            progress(f"round {r + 1}/{rounds}")
    return times


def interleaved(fns: dict[str, Callable[[], object]], device: torch.device, rounds: int) -> dict[str, float]:
    """Median seconds per call of each function, timed in alternating rounds (one warm-up call each).

    On a shared machine whose speed drifts, alternating keeps the drift out of the ratios between them.
    """
    return {name: statistics.median(t) for name, t in interleaved_samples(fns, device, rounds).items()}


# -- trainers --------------------------------------------------------------------------------------------
def trainer_name(name: str) -> str:
    """The registered name of ``name`` (``MMRL++`` -> ``MMRLpp``); raises on an unknown one."""
    name = ALIASES.get(name, name)
    if name not in CONFIGS:
        raise ValueError(f"unknown trainer {name!r}; choose from {list(CONFIGS)} (MMRL++ = MMRLpp)")
    return name


def class_names(n: int) -> list[str]:
    """``n`` distinct class names of one to three words (the prompts' lengths vary as real names do)."""
    adjectives = ["red", "blue", "green", "small", "large", "striped", "dotted", "shiny", "wooden", "old"]
    nouns = ["circle", "square", "triangle", "hexagon", "star", "pickup truck", "sea turtle", "golden retriever",
             "hot air balloon", "electric guitar"]
    names = []
    for i in range(n):
        name = f"{adjectives[i % 10]} {nouns[(i // 10 + i) % 10]}"
        names.append(name if i < 100 else f"{name} {i}")
    return names


def bench_config(trainer: str, overrides: dict[str, Any] | None = None, prec: str = "fp32"):
    """``configs/<trainer's config>.yaml`` merged as ``train.py`` merges it, ``TRAINER.NAME`` set, ``PREC``
    forced to ``prec`` (fp32: what a CPU runs), then ``overrides`` (``{"KEY": value}``); frozen."""
    from dassl.engine import TRAINER_REGISTRY

    import trainers  # noqa: F401  (registers the trainers and their config nodes)
    from clipkit.config import load_config

    trainer = trainer_name(trainer)
    node = TRAINER_REGISTRY.get(trainer).Settings.NODE
    base = {"TRAINER.NAME": trainer, f"TRAINER.{node}.PREC": prec}
    base.update(overrides or {})
    return load_config(osp.join(ROOT, "configs", f"{CONFIGS[trainer]}.yaml"), overrides=base)


def make_trainer(cfg, clip_model, classnames: Sequence[str], template: str = "", device: torch.device | None = None):
    """``cfg.TRAINER.NAME``'s trainer around ``clip_model`` (shared, frozen, not copied), with what
    ``PromptTrainer.build_model`` sets up for a training step; no data set, loaders or output folder."""
    from dassl.engine import TRAINER_REGISTRY
    from dassl.optim import build_optimizer

    from clipkit.precision import PrecisionStep
    from clipkit.templates import template_for
    from clipkit.trainer import build_lr_scheduler, check_trainable

    device = device or clip_model.logit_scale.device
    for p in clip_model.parameters():
        p.requires_grad_(False)
    cls = TRAINER_REGISTRY.get(cfg.TRAINER.NAME)
    tr = cls.__new__(cls)  # the trainer's own step code without Dassl's data set and loaders
    tr.cfg, tr.device = cfg, device
    tr.check_cfg(cfg)
    tr.model = cls.make_model(cfg, clip_model, tr.settings, list(classnames)).to(device)
    tr.learner = tr.model.learner
    check_trainable(tr.model)
    tr.template = template or template_for(cfg.DATASET.NAME, cfg.DATASET.PROMPT_TEMPLATE)
    tr.model.set_classes(list(classnames), tr.template)
    tr.optim = tr.sched = None
    if trainable_parameters(tr.model):
        tr.optim = build_optimizer(tr.learner, cfg.OPTIM)
        tr.sched = build_lr_scheduler(tr.optim, cfg.OPTIM)
    tr.step = PrecisionStep(tr.settings.PREC, device)
    return tr


def trainable_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def train_mode(tr) -> None:
    tr.model.train()
    tr.model.clip.eval()  # as PromptTrainer.set_model_mode("train")


def train_step(tr, image: torch.Tensor, label: torch.Tensor,
               outputs: Callable[[], dict[str, torch.Tensor]] | None = None) -> torch.Tensor:
    """One training step as ``PromptTrainer.forward_backward`` runs it: the trainer's ``train_outputs``
    (or ``outputs()``, e.g. a naive recomputation of them), the weighted sum of every ``loss_terms`` term,
    backward and the optimizer step (``PrecisionStep``). Returns the loss."""
    train_mode(tr)
    with tr.step.autocast():
        out = outputs() if outputs is not None else tr.train_outputs(image, label)
        terms = tr.loss_terms(out, label)
        loss = sum(w * t for w, t in terms.values())
    tr.step.backward_and_update(loss, tr.optim)
    return loss.detach()


def eval_mode(tr) -> None:
    tr.model.eval()
    tr.model.clip.eval()


@torch.no_grad()
def prepare_classes(tr) -> None:
    """``set_classes`` from scratch (tokenise, cut, frozen features): once per class set, when the model is
    built for a data set; an evaluation of the same classes reuses it."""
    names, template = tr.model.classnames, tr.model.template
    tr.model.classnames = ()  # forget the class set, so set_classes prepares it again
    tr.model.set_classes(names, template)


@torch.no_grad()
def eval_text(tr) -> None:
    """What an evaluation computes once: the adapted class text features (the model's evaluation cache,
    emptied first). Nothing for CoCoOp, whose class text depends on the image."""
    eval_mode(tr)
    if tr.cfg.TRAINER.NAME in PER_IMAGE_TEXT:
        return
    tr.model._text_cache = None
    with tr.step.autocast():
        tr.model.class_text()


@torch.no_grad()
def eval_batch(tr, image: torch.Tensor) -> torch.Tensor:
    """Logits of a test batch in the trainer's inference mode, as ``PromptTrainer.model_inference``
    computes them (the class text comes from the evaluation cache; CoCoOp encodes it per image)."""
    eval_mode(tr)
    with tr.step.autocast():
        return tr.model.predict(image, tr.inference_mode()).float()


def eval_images_per_s(text_s: float, batch_s: float, batch: int, images: int) -> float:
    """Images per second of an evaluation of ``images`` images: the class text once, then batches."""
    return images / (text_s + batch_s * images / batch)
