"""DeAR training-step cost against zero-shot CLIP and against the same step computed naively.

    python -m benchmarks.train_step [--resolution 224] [--batch 16] [--classes 50] [--reps 3]

Each phase runs in its own process (so CPU peak RSS is per phase), on the same random batch, ViT-B/16
shapes with random weights:
- zeroshot: frozen CLIP image features + logits against cached text features (no grad);
- dear: ``DeAR.forward_backward``'s computation: shared no-grad prefix (layers < J), adapted layers J..12
  with autograd, frozen layers J..12 on the same prefix, text layers J..12 from the cached class-prompt
  prefix, CE + L_reg + L_fusion, backward, AdamW step;
- naive: the same losses computed the way forked trainers do: full adapted image forward (layers 1..12
  under autograd), full frozen image forward, full adapted text forward and full frozen text forward for
  every class, every step.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

import torch
import torch.nn.functional as F

from benchmarks.common import measure
from clipkit.surgery import causal_mask, run_blocks, run_injected
from clipkit.tiny import VIT_B16_SHAPE, build_clip


def build(args, device):
    from yacs.config import CfgNode as CN

    from head_roles import load_roles
    from trainers.dear import DeARModel

    cfg = CN()
    cfg.INJECT_LAYER, cfg.BETA, cfg.N_TEXT_TOKENS, cfg.TOKEN_INIT_STD = 0, 0.9, 5, 0.02
    cfg.MASK, cfg.MASK_SEED, cfg.ATTR_INTERACTION, cfg.FUSION_INIT_CLS = "role", 0, "self", 0.7
    clip_model = build_clip(image_resolution=args.resolution, **VIT_B16_SHAPE).to(device)
    for p in clip_model.parameters():
        p.requires_grad_(False)
    model = DeARModel(clip_model, load_roles("ViT-B/16"), cfg).to(device)
    model.set_classes([f"a photo of a class number {i}." for i in range(args.classes)])
    return model


def losses(model, out, label):
    ce = F.cross_entropy(out["logits"], label)
    return ce + model.reg_loss(out) + 0.7 * -torch.log(out["alpha"][0])


def naive_outputs(model, image):
    """Same outputs as ``DeARModel.forward(with_frozen=True)``, recomputing everything every step."""
    v, t, learner = model.vision, model.text, model.learner
    x = v.embed(image)
    x = run_blocks(v.blocks[:model.start], x)  # recomputed under autograd mode
    out = run_injected(v.blocks[model.start:], x, list(learner.attribute_tokens), x.shape[1], model.beta,
                       list(model.role_masks))
    f_cls = F.normalize(v.project(out.x[:, 0]), dim=-1)
    f_attr = F.normalize(v.visual.ln_post(out.tokens) @ learner.attribute_proj, dim=-1)
    with torch.no_grad():
        f_frozen = F.normalize(v(image), dim=-1)  # full frozen image forward
        text_frozen = F.normalize(t(model.text_ids), dim=-1)  # full frozen text forward
    xt = t.embed(model.text_ids)
    xt = run_blocks(t.blocks[:model.text_start], xt, causal_mask(xt.shape[1], xt.device, xt.dtype))
    text = F.normalize(t.deep_with_tokens(xt, model.text_ids, model.text_start, list(learner.text_tokens),
                                          model.beta), dim=-1)
    scale = model.clip.logit_scale.exp()
    logits_cls = scale * f_cls @ text.t()
    logits_attr = scale * torch.einsum("bke,ce->bkc", f_attr, text)
    alpha = learner.alpha
    fused = alpha[0] * logits_cls + torch.einsum("k,bkc->bc", alpha[1:], logits_attr)
    model.text_frozen = text_frozen
    return dict(f_cls=f_cls, f_frozen=f_frozen, text=text, logits=fused, alpha=alpha)


def run_phase(phase: str, args) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model = build(args, device)
    image = torch.randn(args.batch, 3, args.resolution, args.resolution, device=device)
    label = torch.randint(0, args.classes, (args.batch,), device=device)
    opt = torch.optim.AdamW(model.learner.parameters(), lr=1e-3)
    amp = torch.autocast("cuda", dtype=torch.float16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)

    if phase == "zeroshot":
        text = model.text_frozen

        def fn():
            with torch.no_grad(), amp:
                f = F.normalize(model.clip.encode_image(image).float(), dim=-1)
                return f @ text.t()
    else:
        model.train()

        def fn():
            with amp:
                out = model(image, with_frozen=True) if phase == "dear" else naive_outputs(model, image)
                loss = losses(model, out, label)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return measure(fn, device, args.reps) | {"device": str(device)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--classes", type=int, default=50)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--phase", choices=["zeroshot", "dear", "naive"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.phase:
        print(json.dumps(run_phase(args.phase, args)))
        return
    res = {}
    for phase in ("zeroshot", "dear", "naive"):
        cmd = [sys.executable, "-m", "benchmarks.train_step", "--phase", phase, "--resolution", str(args.resolution),
               "--batch", str(args.batch), "--classes", str(args.classes), "--reps", str(args.reps)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        res[phase] = json.loads(out.stdout.strip().splitlines()[-1])
    mem = "peak CUDA MiB" if res["dear"]["device"].startswith("cuda") else "peak RSS MiB"
    print(f"device={res['dear']['device']} batch={args.batch} resolution={args.resolution} classes={args.classes} "
          "(ViT-B/16 shapes, random weights)")
    print(f"{'phase':28s} {'ms/step':>10s} {mem:>14s}")
    for phase, name in (("zeroshot", "zero-shot CLIP forward"), ("dear", "DeAR training step"),
                        ("naive", "naive DeAR training step")):
        print(f"{name:28s} {res[phase]['seconds'] * 1000:10.1f} {res[phase]['peak_mib']:14.0f}")
    d, z, n = res["dear"]["seconds"], res["zeroshot"]["seconds"], res["naive"]["seconds"]
    print(f"DeAR step / zero-shot forward: {d / z:.2f}x (target <= 2.2x)")
    print(f"naive step / DeAR step:        {n / d:.2f}x (target >= 1.8x)")


if __name__ == "__main__":
    main()
