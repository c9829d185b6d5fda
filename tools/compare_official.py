"""Compare our trainers with the official implementations, from dumps the official code wrote.

    python -m tools.compare_official DUMP.pt [DUMP.pt ...] --clip TINY_CLIP.pt [--tol 1e-5]

A dump (made outside this repository by running CoOp / multimodal-prompt-learning / PromptSRC / MMRL on a
tiny CLIP, CPU, fp32; the README's "Same numbers as the official code" says how) holds the official
trainer's config, its initial learnable values, a batch of images and labels, the logits, every loss term,
the gradient of every learnable parameter after ``loss.backward()``, and the evaluation logits. Here we
build our model from the same config on the same CLIP file, copy the official initial values into our
learner (names mapped below), run the same batch through our trainer's ``train_outputs`` and
``loss_terms``, and report the largest absolute difference of each quantity. Nothing of the official
code is imported or needed.
"""
from __future__ import annotations

import argparse
import re
import sys
from typing import Callable

import torch

# official learnable name -> ours, per trainer (a function of the name; None: not a learnable of ours)
_IVLP_NAMES: list[tuple[str, Callable[[re.Match], str]]] = [
    (r"prompt_learner\.ctx", lambda m: "text_ctx"),
    (r"image_encoder\.VPT", lambda m: "vision_deep.0"),
    (r"image_encoder\.transformer\.resblocks\.(\d+)\.VPT_shallow", lambda m: f"vision_deep.{m.group(1)}"),
    (r"text_encoder\.transformer\.resblocks\.(\d+)\.VPT_shallow", lambda m: f"text_deep.{int(m.group(1)) - 1}"),
]
NAME_MAPS: dict[str, list[tuple[str, Callable[[re.Match], str]]]] = {
    "CoOp": [(r"(.*)", lambda m: m.group(1))],
    "CoCoOp": [(r"(.*)", lambda m: m.group(1))],
    "IVLP": _IVLP_NAMES,
    "PromptSRC": _IVLP_NAMES,
    "MaPLe": [(r"prompt_learner\.(.*)", lambda m: m.group(1))],
    "MMRL": [(r"representation_learner\.(.*)", lambda m: m.group(1)),
             (r"image_encoder\.proj_rep", lambda m: "proj_rep")],
    "MMRLpp": [(r"representation_learner\.(.*)", lambda m: m.group(1)),
               (r"image_encoder\.([AB])", lambda m: m.group(1))],
}
# official loss-term name -> (ours, whether the official value includes its weight), per trainer
TERM_MAPS: dict[str, dict[str, tuple[str, bool]]] = {
    "CoOp": {"loss_ce": ("ce", True)}, "CoCoOp": {"loss_ce": ("ce", True)}, "IVLP": {"loss_ce": ("ce", True)},
    "MaPLe": {"loss_ce": ("ce", True)},
    "PromptSRC": {"loss_ce": ("ce", True), "loss_scl_text": ("scl_text", True), "loss_scl_image": ("scl_image", True),
                  "loss_scl_logits": ("scl_logits", True)},
    "MMRL": {"loss_ce": ("ce", False), "loss_ce_rep": ("ce_rep", False), "loss_cos_img": ("cos_img", False),
             "loss_cos_text": ("cos_text", False)},
}
TERM_MAPS["MMRLpp"] = TERM_MAPS["MMRL"]
# official output name -> ours, where they differ
OUT_MAPS: dict[str, dict[str, str]] = {"MMRL": {"logits": "logits_cls"}, "MMRLpp": {"logits": "logits_cls"}}


# official evaluation output -> our inference mode (default: "logits" is the model's first mode)
EVAL_MODES: dict[str, dict[str, str]] = {"MMRL": {"logits": "cls", "logits_fusion": "fusion"},
                                         "MMRLpp": {"logits": "cls", "logits_fusion": "fusion"}}


def ours_name(trainer: str, name: str) -> str:
    for pattern, fn in NAME_MAPS[trainer]:
        m = re.fullmatch(pattern, name)
        if m:
            return fn(m)
    raise KeyError(f"{trainer}: no mapping for official parameter {name!r}")


def our_config(dump: dict, clip_file: str):
    """Our config with the dump's trainer node (the official keys are ours) and our tiny-CLIP settings."""
    from yacs.config import CfgNode

    from clipkit.config import load_config

    official = CfgNode.load_cfg(dump["cfg_yaml"])
    trainer = dump["meta"]["trainer"]
    cfg = load_config(freeze=False, overrides={"TRAINER.NAME": trainer, "MODEL.BACKBONE.NAME": "ViT-B/16",
                                                "MODEL.BACKBONE.PATH": clip_file})
    from dassl.engine import TRAINER_REGISTRY

    node = TRAINER_REGISTRY.get(trainer).Settings.NODE
    for k, v in official.TRAINER[node].items():
        if k in cfg.TRAINER[node]:
            cfg.TRAINER[node][k] = v
    cfg.TRAINER[node].PREC = "fp32"
    cfg.freeze()
    return cfg


def compare(dump_path: str, clip_file: str) -> dict[str, tuple[float, float]]:
    """``{quantity: (max abs difference, scale)}``; a quantity agrees when ``difference <= tol * scale``,
    ``scale = max(1, max |official value|)`` (absolute for values below 1, relative above)."""
    from dassl.engine import TRAINER_REGISTRY

    from clipkit.loader import load_clip

    dump = torch.load(dump_path, map_location="cpu", weights_only=False)
    trainer = dump["meta"]["trainer"]
    cfg = our_config(dump, clip_file)
    cls = TRAINER_REGISTRY.get(trainer)
    settings = cls.Settings.from_cfg(cfg)
    clip_model = load_clip("ViT-B/16", clip_file)
    classnames = list(dump["classnames"])
    model = cls.make_model(cfg, clip_model, settings, classnames)
    ours = dict(model.learner.named_parameters())
    with torch.no_grad():
        for name, value in dump["init"].items():
            target = ours_name(trainer, name)
            if ours[target].shape != value.shape:
                raise ValueError(f"{trainer}: {name} -> {target}: official shape {tuple(value.shape)}, "
                                 f"ours {tuple(ours[target].shape)}")
            ours[target].copy_(value)
    missing = set(ours) - {ours_name(trainer, n) for n in dump["init"]}
    if missing:
        raise ValueError(f"{trainer}: our learnables {sorted(missing)} have no official counterpart in the dump")
    template = dump.get("template") or "{}"
    model.set_classes(classnames, template if "{}" in template else "{}")
    tr = cls.__new__(cls)  # the trainer's loss code without Dassl's data set and loaders
    tr.cfg, tr.settings, tr.model = cfg, settings, model
    images, labels = dump["images"], dump["labels"]
    model.train()
    model.clip.eval()
    out = tr.train_outputs(images, labels)
    terms = tr.loss_terms(out, labels)
    total = sum(w * t for w, t in terms.values())
    grads = torch.autograd.grad(total, [ours[ours_name(trainer, n)] for n in dump["train"]["grads"]])
    diffs: dict[str, tuple[float, float]] = {}

    def record(name: str, got, want) -> None:
        got, want = torch.as_tensor(got).detach().float(), torch.as_tensor(want).float()
        diffs[name] = ((got - want).abs().max().item(), max(1.0, want.abs().max().item()))

    for key, want in dump["train"]["logits"].items():
        mine = OUT_MAPS.get(trainer, {}).get(key, key)
        if mine in out:
            record(f"train/{key}", out[mine], want)
    for official, (mine, weighted) in TERM_MAPS.get(trainer, {}).items():
        w, t = terms[mine]
        record(f"term/{official}", w * t if weighted else t, dump["train"]["terms"][official])
    record("term/total", total, dump["train"]["total"])
    for name, g in zip(dump["train"]["grads"], grads):
        record(f"grad/{name}", g, dump["train"]["grads"][name])
    model.eval()
    with torch.no_grad():
        for key, want in dump["eval"].items():
            mode = EVAL_MODES.get(trainer, {}).get(key, model.INFERENCE_MODES[0] if key == "logits" else None)
            if mode is not None:
                record(f"eval/{key}", model.predict(images, mode), want)
    return diffs


def compare_gpa(dump_path: str, clip_file: str) -> dict[str, tuple[float, float]]:
    """PromptSRC's Gaussian prompt aggregation: replay the dump's 4-epoch run (one batch per epoch, the
    official optimizer and schedule, GPA mean 3, std 1) with our trainer's ``end_of_epoch`` and compare
    the loss of every epoch, every state that was weighted, its weight, and the deployed parameters."""
    from dassl.engine import TRAINER_REGISTRY
    from dassl.optim import build_optimizer
    from yacs.config import CfgNode

    from clipkit.loader import load_clip
    from clipkit.trainer import build_lr_scheduler
    from trainers.promptsrc import gpa_weights

    dump = torch.load(dump_path, map_location="cpu", weights_only=False)
    sim = dump["gpa_sim_4ep"]
    trainer = dump["meta"]["trainer"]
    cfg = our_config(dump, clip_file)
    cfg.defrost()
    official = CfgNode.load_cfg(dump["cfg_yaml"])
    for k in ("NAME", "LR", "WEIGHT_DECAY", "MOMENTUM", "LR_SCHEDULER", "WARMUP_EPOCH", "WARMUP_TYPE",
              "WARMUP_CONS_LR"):
        cfg.OPTIM[k] = official.OPTIM[k]
    cfg.OPTIM.MAX_EPOCH = len(sim["loss_per_epoch"])
    cls = TRAINER_REGISTRY.get(trainer)
    settings = cls.Settings.from_cfg(cfg)
    model = cls.make_model(cfg, load_clip("ViT-B/16", clip_file), settings, list(dump["classnames"]))
    ours = dict(model.learner.named_parameters())
    with torch.no_grad():
        for name, value in dump["init"].items():
            ours[ours_name(trainer, name)].copy_(value)
    model.set_classes(list(dump["classnames"]), "{}")
    tr = cls.__new__(cls)
    tr.cfg, tr.settings, tr.model, tr.learner = cfg, settings, model, model.learner
    tr.max_epoch, tr.gpa_sum = cfg.OPTIM.MAX_EPOCH, None
    tr.gpa_weights = gpa_weights(tr.max_epoch, 3.0, 1.0)
    opt = build_optimizer(model.learner, cfg.OPTIM)
    sched = build_lr_scheduler(opt, cfg.OPTIM)
    diffs: dict[str, tuple[float, float]] = {}
    weighted: list[dict[str, torch.Tensor]] = []
    for e in range(tr.max_epoch):
        model.train()
        model.clip.eval()
        lr = opt.param_groups[0]["lr"]
        diffs[f"gpa/lr_epoch{e + 1}"] = (abs(lr - sim["lr_used_per_epoch"][e]), 1.0)
        out = tr.train_outputs(dump["images"], dump["labels"])
        loss = sum(w * t for w, t in tr.loss_terms(out, dump["labels"]).values())
        diffs[f"gpa/loss_epoch{e + 1}"] = (abs(loss.item() - sim["loss_per_epoch"][e]), 1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        weighted.append({n: p.detach().clone() for n, p in model.learner.named_parameters()})
        tr.epoch = e
        tr.end_of_epoch()
    for e, entry in enumerate(sim["accumulated"]):
        diffs[f"gpa/weight_epoch{e + 1}"] = (abs(entry["weight"] - tr.gpa_weights[e]), 1.0)
        for name, want in entry["state"].items():
            got = weighted[e][ours_name(trainer, name)]
            diffs[f"gpa/state_epoch{e + 1}/{name}"] = ((got - want).abs().max().item(),
                                                       max(1.0, want.abs().max().item()))
    for name, want in sim["final_params_after_gpa_load"].items():
        got = ours[ours_name(trainer, name)].detach()
        diffs[f"gpa/deployed/{name}"] = ((got - want).abs().max().item(), max(1.0, want.abs().max().item()))
    return diffs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dumps", nargs="+")
    p.add_argument("--clip", required=True, help="the tiny CLIP state dict the dumps were made with")
    p.add_argument("--tol", type=float, default=1e-5)
    p.add_argument("--verbose", action="store_true", help="print every quantity")
    args = p.parse_args(argv)
    import dasslite

    dasslite.use_dassl()
    import trainers  # noqa: F401

    torch.set_num_threads(1)
    failed = 0
    for path in args.dumps:
        diffs = compare(path, args.clip)
        if "gpa_sim_4ep" in torch.load(path, map_location="cpu", weights_only=False):
            diffs.update(compare_gpa(path, args.clip))
        worst_abs = max(d for d, _ in diffs.values())
        worst_rel = max(d / scale for d, scale in diffs.values())
        ok = worst_rel <= args.tol
        failed += not ok
        print(f"{'PASS' if ok else 'FAIL'} {path}: {len(diffs)} quantities (logits, loss terms, every gradient, "
              f"evaluation); max |diff| {worst_abs:.2e}, max |diff| / max(1, |official|) {worst_rel:.2e}")
        for k, (d, scale) in diffs.items():
            if d > args.tol * scale or args.verbose:
                print(f"    {k}: {d:.2e} (scale {scale:.3g})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
