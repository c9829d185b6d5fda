"""Every trainer's training-step and evaluation cost at ViT-B/16 shapes, and DeAR's step against a naive one.

    python -m benchmarks.train_step [--trainers CoOp MaPLe ...] [--classes 50] [--batch 16] [--rounds 5]
        [--resolution 224] [--eval-batch 16] [--eval-images 1000] [--prec fp32|amp|bf16] [--no-naive]
        [--no-memory] [--json PATH] [--flops]

ViT-B/16 shapes with random weights (``clipkit.tiny.build_clip``), one random batch, ``--classes`` classes.
Each trainer is built from its official config (``configs/<name>.yaml``) with ``PREC`` set to ``--prec``
(default fp32; ``amp`` = fp16 autocast with a gradient scaler, CUDA only, the precision the official GPU
configs train in) by ``benchmarks.common.make_trainer``, around one shared frozen CLIP. Per trainer:
- trainable parameters;
- step: ``forward_backward``'s computation (``train_outputs``, every ``loss_terms`` term, backward, the
  config's optimizer step) on a batch of ``--batch`` (CoCoOp also at its official batch of 1);
- peak memory: the high-water mark (CPU: ``VmHWM``; CUDA: max allocated) of a process of its own that
  builds CLIP and the trainer and runs two steps (zero-shot CLIP: two evaluations);
- evaluation: ``text`` (the adapted class text features, computed once per evaluation and cached; CoCoOp
  encodes them per image inside the batch instead), ``batch`` (the logits of ``--eval-batch`` test images in
  the trainer's inference mode) and images/s over an evaluation of ``--eval-images`` images
  (``images / (text + batches)``); ``classes``: ``set_classes`` (tokenise, frozen features), once per class
  set when the model is built, reported apart.
DeAR is also compared with the same step computed naively (``--no-naive`` skips it):
- naive: full adapted image forward (layers 1..12 under autograd), full frozen image forward, full adapted
  and frozen text forwards of every class, every step, the prompts at CLIP's 77-token context as
  ``encode_text`` and the CoOp family run them;
- naive_cut: the same, with the prompts cut after their last end-of-text token as DeAR does (exact under
  causal attention), so that only DeAR's sharing and caching separate it from DeAR.
Times are medians over rounds that alternate every computation (the machine's drift hits them alike).
``--flops`` counts instead of timing (``benchmarks.common.flops``): the floating-point operations of each
computation above (one call after a warm-up), a figure of the computation that no machine or load changes.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from benchmarks import common
from clipkit.surgery import causal_mask, run_blocks, run_injected
from clipkit.tiny import VIT_B16_SHAPE, build_clip

NAIVE = ("naive", "naive_cut")


@dataclass(frozen=True)
class Case:
    """A trainer timed at one training batch size."""

    trainer: str
    batch: int

    @property
    def label(self) -> str:
        return f"{self.trainer}@{self.batch}"


def cases(trainers: list[str], batch: int) -> list[Case]:
    out = []
    for t in trainers:
        if t == "CoCoOp" and batch != 1:
            out.append(Case(t, 1))  # its official batch
        out.append(Case(t, batch))
    return out


def naive_outputs(model, image: torch.Tensor, full_context: bool = True) -> dict[str, torch.Tensor]:
    """Same outputs as ``DeARModel.forward(with_frozen=True)``, recomputing everything every step.

    ``full_context``: the prompts at CLIP's 77-token context, as ``encode_text`` and the CoOp family run
    them; otherwise cut after the last end-of-text token like DeAR does (exact, so the stricter baseline).
    """
    from clipkit.prompts import template_prompts

    v, t, learner = model.vision, model.text, model.learner
    ids = template_prompts(model.classnames, model.template, model.clip.context_length).ids.to(image.device)
    if full_context:
        ids = F.pad(ids, (0, model.clip.context_length - ids.shape[1]))  # the tokenizer's zero padding
    x = v.embed(image)
    x = run_blocks(v.blocks[:model.start], x)  # recomputed under autograd mode
    out = run_injected(v.blocks[model.start:], x, list(learner.attribute_tokens), x.shape[1], model.beta,
                       model.masks)
    f_cls = F.normalize(v.project(out.x[:, 0]), dim=-1)
    f_attr = F.normalize(v.visual.ln_post(out.tokens) @ learner.attribute_proj, dim=-1)
    with torch.no_grad():
        f_frozen = F.normalize(v(image), dim=-1)  # full frozen image forward
        text_frozen = F.normalize(t(ids), dim=-1)  # full frozen text forward
    xt = t.embed(ids)
    xt = run_blocks(t.blocks[:model.text_start], xt, causal_mask(xt.shape[1], xt.device, xt.dtype))
    text = F.normalize(t.deep_with_tokens(xt, ids, model.text_start, list(learner.text_tokens), model.beta), dim=-1)
    scale = model.clip.logit_scale.exp()
    logits_cls = scale * f_cls @ text.t()
    logits_attr = scale * torch.einsum("bke,ce->bkc", f_attr, text)
    alpha = learner.alpha
    fused = alpha[0] * logits_cls + torch.einsum("k,bkc->bc", alpha[1:], logits_attr)
    model.text_frozen = text_frozen  # what reg_loss reads: recomputed, as a naive step does
    return dict(f_cls=f_cls, f_frozen=f_frozen, text=text, logits=fused, logits_cls=logits_cls,
                logits_attr=logits_attr, alpha=alpha)


class Bench:
    """One shared frozen CLIP, the trainers, and the inputs every computation reads."""

    def __init__(self, args, device: torch.device, trainers: list[str]) -> None:
        self.args, self.device = args, device
        self.clip = build_clip(image_resolution=args.resolution, **VIT_B16_SHAPE).to(device)
        self.names = common.class_names(args.classes)
        self.trainers = {}
        for name in trainers:
            torch.manual_seed(0)
            cfg = common.bench_config(name, prec=args.prec)
            self.trainers[name] = common.make_trainer(cfg, self.clip, self.names, device=device)
        g = torch.Generator().manual_seed(0)
        size = (args.resolution, args.resolution)
        self.images = {b: torch.randn(b, 3, *size, generator=g).to(device)
                       for b in {args.batch, args.eval_batch, 1}}
        self.labels = {b: torch.randint(0, args.classes, (b,), generator=g).to(device) for b in self.images}

    def step(self, case: Case):
        tr, image, label = self.trainers[case.trainer], self.images[case.batch], self.labels[case.batch]
        return lambda: common.train_step(tr, image, label)

    def naive_step(self, full_context: bool):
        tr, image, label = self.trainers["DeAR"], self.images[self.args.batch], self.labels[self.args.batch]
        return lambda: common.train_step(tr, image, label, lambda: naive_outputs(tr.model, image, full_context))

    def computations(self, run: list[Case], naive: bool) -> dict:
        """Every timed computation of one round, by name."""
        fns = {}
        for case in run:
            if common.trainable_parameters(self.trainers[case.trainer].model):
                fns[f"{case.label}/step"] = self.step(case)
        for name, tr in self.trainers.items():
            fns[f"{name}/text"] = lambda tr=tr: common.eval_text(tr)
            fns[f"{name}/eval"] = lambda tr=tr: common.eval_batch(tr, self.images[self.args.eval_batch])
        if naive:
            naive_tr = self.trainers["DeAR"]
            text_frozen = naive_tr.model.text_frozen.clone()
            for phase in NAIVE:
                fn = self.naive_step(phase == "naive")

                def run_naive(fn=fn):
                    fn()
                    naive_tr.model.text_frozen = text_frozen  # leave DeAR's own cache as it was

                fns[phase] = run_naive
        return fns


# -- peak memory: one process per computation ------------------------------------------------------------
def child_peak(what: str, args) -> dict:
    """Peak MiB of ``what`` (a case label, a trainer's evaluation, or a naive phase) in a fresh process."""
    cmd = [sys.executable, "-m", "benchmarks.train_step", "--child", what, "--resolution", str(args.resolution),
           "--batch", str(args.batch), "--classes", str(args.classes), "--eval-batch", str(args.eval_batch),
           "--threads", str(args.threads), "--prec", args.prec]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        reason = "killed (out of memory?)" if out.returncode in (-9, 137) else out.stderr.strip().splitlines()[-1:]
        return {"error": f"exit {out.returncode}: {reason}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_child(what: str, args, device: torch.device) -> None:
    trainer, _, batch = what.partition("@")
    naive = trainer in NAIVE
    bench = Bench(args, device, ["DeAR" if naive else trainer])
    if naive:
        fn = bench.naive_step(trainer == "naive")
    elif batch == "eval":
        tr = bench.trainers[trainer]
        fn = lambda: (common.eval_text(tr), common.eval_batch(tr, bench.images[args.eval_batch]))  # noqa: E731
    else:
        fn = bench.step(Case(trainer, int(batch)))
    print(json.dumps(common.measure(fn, device, reps=1)))


# -- report ----------------------------------------------------------------------------------------------
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trainers", nargs="+", default=list(common.CONFIGS), help="default: all (MMRL++ = MMRLpp)")
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--classes", type=int, default=50)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--eval-batch", type=int, help="test images per batch (default: --batch)")
    p.add_argument("--eval-images", type=int, default=1000, help="images of the evaluation the text is amortised over")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    p.add_argument("--prec", default="fp32", choices=["fp32", "amp", "bf16"],
                   help="every trainer's PREC (amp needs CUDA: on CPU it runs as fp32, as training does)")
    p.add_argument("--no-naive", action="store_true", help="skip DeAR's naive steps")
    p.add_argument("--no-memory", action="store_true", help="skip the per-computation peak-memory processes")
    p.add_argument("--json", help="also write every sample here")
    p.add_argument("--flops", action="store_true", help="count each computation's FLOPs instead of timing it")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    args.eval_batch = args.eval_batch or args.batch
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.child:
        run_child(args.child, args, device)
        return
    trainers = [common.trainer_name(t) for t in args.trainers]
    naive = "DeAR" in trainers and not args.no_naive
    run = cases(trainers, args.batch)

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    if args.flops:
        report_flops(args, Bench(args, device, trainers), run, naive)
        return
    peaks: dict[str, dict] = {}
    if not args.no_memory:
        # a trainer's training step, or the evaluation of one that does not train (zero-shot CLIP)
        labels = [c.label if c.trainer != "ZeroshotCLIP" else f"{c.trainer}@eval" for c in run]
        for what in dict.fromkeys(labels + (list(NAIVE) if naive else [])):
            peaks[what] = child_peak(what, args)
            log(f"peak memory {what}: {peaks[what]}")
    run = [c for c in run if "error" not in peaks.get(c.label, {})]  # what did not fit is not timed
    bench = Bench(args, device, trainers)
    log("built every trainer")
    classes_s = {}
    for name, tr in bench.trainers.items():
        classes_s[name] = common.timed(lambda tr=tr: common.prepare_classes(tr), device)
    log("class sets prepared")
    samples = common.interleaved_samples(bench.computations(run, naive), device, args.rounds, log)
    med = {k: statistics.median(v) for k, v in samples.items()}
    report(args, device, trainers, run, bench, med, peaks, classes_s, naive)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "device": str(device), "threads": torch.get_num_threads(),
                       "samples": samples, "peaks": peaks, "classes_s": classes_s,
                       "trainable": {n: common.trainable_parameters(tr.model) for n, tr in bench.trainers.items()}},
                      f, indent=1)


def report_flops(args, bench: Bench, run: list[Case], naive: bool) -> None:
    """Each computation of a round counted once after a warm-up call: GFLOP per step, per text, per batch."""
    counts = {}
    for name, fn in bench.computations(run, naive).items():
        fn()
        counts[name] = common.flops(fn)["total"] / 1e9
    print(f"GFLOP per computation (forward + backward; classes={args.classes} batch={args.batch} "
          f"resolution={args.resolution}, eval batch {args.eval_batch}, PREC {args.prec})")
    print(f"{'trainer':16s} {'batch':>5s} {'step GFLOP':>10s} {'text GFLOP':>10s} {'eval GFLOP':>10s}")
    for name in bench.trainers:
        for case in cases([name], args.batch):
            step = counts.get(f"{case.label}/step")
            print(f"{common.DISPLAY.get(name, name):16s} {case.batch:5d} "
                  + (f"{step:10.1f}" if step is not None else f"{'-':>10s}")
                  + f" {counts[f'{name}/text']:10.1f} {counts[f'{name}/eval']:10.1f}")
    if naive:
        d = counts[f"DeAR@{args.batch}/step"]
        for phase in NAIVE:
            print(f"  DeAR {phase:9s} step {counts[phase]:10.1f} GFLOP ({counts[phase] / d:.2f}x DeAR's)")


def report(args, device, trainers, run, bench, med, peaks, classes_s, naive) -> None:
    mem = "peak CUDA MiB" if device.type == "cuda" else "peak RSS MiB"
    print(f"device={device} threads={torch.get_num_threads()} classes={args.classes} batch={args.batch} "
          f"resolution={args.resolution} rounds={args.rounds} eval: batch {args.eval_batch}, text amortised over "
          f"{args.eval_images} images (ViT-B/16 shapes, random weights, PREC {args.prec})")
    print(f"{'trainer':16s} {'config':10s} {'trainable':>10s} {'batch':>5s} {'step ms':>9s} {mem:>13s} "
          f"{'text ms':>8s} {'eval ms':>8s} {'eval img/s':>10s} {'classes ms':>10s}")
    for name in trainers:
        tr = bench.trainers[name]
        n_params = common.trainable_parameters(tr.model)
        ev = med[f"{name}/eval"]
        text = med[f"{name}/text"]
        ips = common.eval_images_per_s(text, ev, args.eval_batch, args.eval_images)
        rows = [c for c in cases([name], args.batch)]
        for i, case in enumerate(rows):
            step = med.get(f"{case.label}/step")
            peak = peaks.get(case.label if n_params else f"{name}@eval", {})
            step_s = f"{step * 1000:9.0f}" if step is not None else f"{'-':>9s}"
            peak_s = f"{peak['peak_mib']:13.0f}" if "peak_mib" in peak else f"{peak.get('error', '-')[:13]:>13s}"
            tail = (f" {text * 1000:8.0f} {ev * 1000:8.0f} {ips:10.2f} {classes_s[name] * 1000:10.0f}"
                    if i == len(rows) - 1 else "")
            print(f"{common.DISPLAY.get(name, name):16s} {common.CONFIGS[name]:10s} {n_params:10,d} "
                  f"{case.batch:5d} {step_s} {peak_s}{tail}")
    if naive:
        d = med[f"DeAR@{args.batch}/step"]
        print(f"\nDeAR against the same step computed naively (batch {args.batch}):")
        names = {"naive": "naive step", "naive_cut": "naive step, prompts cut"}
        for phase in NAIVE:
            peak = peaks.get(phase, {})
            print(f"  {names[phase]:26s} {med[phase] * 1000:9.0f} ms"
                  + (f" ({peak['peak_mib']:.0f} MiB)" if "peak_mib" in peak else ""))
        if "ZeroshotCLIP" in bench.trainers and args.eval_batch == args.batch:
            z = med["ZeroshotCLIP/eval"]
            print(f"  DeAR step / zero-shot forward:        {d / z:.2f}x (target <= 2.2x)")
        print(f"  naive step / DeAR step:               {med['naive'] / d:.2f}x (target >= 1.8x)")
        print(f"  naive step, prompts cut / DeAR step:  {med['naive_cut'] / d:.2f}x (stricter: the naive step "
              "also gets DeAR's exact cut of the prompts after their end-of-text token)")


if __name__ == "__main__":
    main()
