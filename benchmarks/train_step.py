"""DeAR training-step cost against zero-shot CLIP and against the same step computed naively.

    python -m benchmarks.train_step [--resolution 224] [--batch 16] [--classes 50] [--rounds 5]

ViT-B/16 shapes with random weights, one random batch. Four computations:
- zeroshot: frozen CLIP image features + logits against cached text features (no grad);
- dear: ``DeAR.forward_backward``'s computation: shared no-grad prefix (layers < J), adapted layers J..12
  with autograd and frozen layers J..12 sharing layer J's work on the original tokens, text layers J..12
  from the cached class-prompt prefix, CE + L_reg + L_fusion, backward, AdamW step;
- naive: the same losses computed without any of that: full adapted image forward (layers 1..12 under
  autograd), full frozen image forward, full adapted text forward and full frozen text forward for every
  class, every step, the prompts at CLIP's 77-token context as ``encode_text`` runs them;
- naive_cut: the same, but with the prompts cut after their last end-of-text token as DeAR does (exact
  under causal attention), so that only the savings named above separate it from DeAR.
Times are medians over rounds that alternate the four (the machine's drift hits them alike); peak
memory comes from one process per computation (CPU: max RSS; CUDA: max allocated).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

import torch
import torch.nn.functional as F

from benchmarks.common import interleaved, measure
from clipkit.surgery import causal_mask, run_blocks, run_injected
from clipkit.tiny import VIT_B16_SHAPE, build_clip

PHASES = ("zeroshot", "dear", "naive", "naive_cut")


def build(args, device):
    from head_roles import load_roles
    from trainers.dear import DeARModel, DeARSettings

    clip_model = build_clip(image_resolution=args.resolution, **VIT_B16_SHAPE).to(device)
    for p in clip_model.parameters():
        p.requires_grad_(False)
    model = DeARModel(clip_model, load_roles("ViT-B/16"), DeARSettings()).to(device)
    model.set_classes([f"class number {i}" for i in range(args.classes)], "a photo of a {}.")
    return model


def losses(model, out, label):
    ce = F.cross_entropy(out["logits"], label)
    return ce + model.reg_loss(out) + 0.7 * -torch.log(out["alpha"][0])


def naive_outputs(model, image, full_context: bool = True):
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
    return dict(f_cls=f_cls, f_frozen=f_frozen, text=text, logits=fused, alpha=alpha)


def step_functions(args, device) -> dict:
    torch.manual_seed(0)
    model = build(args, device)
    image = torch.randn(args.batch, 3, args.resolution, args.resolution, device=device)
    label = torch.randint(0, args.classes, (args.batch,), device=device)
    opt = torch.optim.AdamW(model.learner.parameters(), lr=1e-3)
    amp = torch.autocast("cuda", dtype=torch.float16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    text = model.text_frozen.clone()

    def zeroshot():
        with torch.no_grad(), amp:
            f = F.normalize(model.clip.encode_image(image).float(), dim=-1)
            return f @ text.t()

    def train_step(naive: str | None):
        model.train()
        with amp:
            out = model(image, with_frozen=True) if naive is None else naive_outputs(model, image, naive == "full")
            loss = losses(model, out, label)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return {"zeroshot": zeroshot, "dear": lambda: train_step(None), "naive": lambda: train_step("full"),
            "naive_cut": lambda: train_step("cut")}


def peak_memory(phase: str, args) -> float:
    """Peak MiB of one warm-up call and one timed call of ``phase``, in a fresh process."""
    cmd = [sys.executable, "-m", "benchmarks.train_step", "--phase", phase, "--resolution", str(args.resolution),
           "--batch", str(args.batch), "--classes", str(args.classes)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--classes", type=int, default=50)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.phase:
        print(json.dumps(measure(step_functions(args, device)[args.phase], device, reps=1)))
        return
    peaks = {phase: peak_memory(phase, args) for phase in PHASES}
    seconds = interleaved(step_functions(args, device), device, args.rounds)
    mem = "peak CUDA MiB" if device.type == "cuda" else "peak RSS MiB"
    print(f"device={device} batch={args.batch} resolution={args.resolution} classes={args.classes} "
          f"rounds={args.rounds} (ViT-B/16 shapes, random weights)")
    print(f"{'phase':28s} {'ms/step':>10s} {mem:>14s}")
    names = {"zeroshot": "zero-shot CLIP forward", "dear": "DeAR training step", "naive": "naive step",
             "naive_cut": "naive step, prompts cut"}
    for phase in PHASES:
        print(f"{names[phase]:28s} {seconds[phase] * 1000:10.1f} {peaks[phase]:14.0f}")
    d, z = seconds["dear"], seconds["zeroshot"]
    print(f"DeAR step / zero-shot forward:            {d / z:.2f}x (target <= 2.2x)")
    print(f"naive step / DeAR step:                   {seconds['naive'] / d:.2f}x (target >= 1.8x)")
    print(f"naive step, prompts cut / DeAR step:      {seconds['naive_cut'] / d:.2f}x (stricter: the naive step "
          "also gets DeAR's exact cut of the prompts after their end-of-text token)")


if __name__ == "__main__":
    main()
