"""Golden outputs: fixed tiny CLIP, data, seed -> stored tensors that refactors must reproduce.

    python tests/golden.py --write dear        # (re)write tests/data/golden_dear.pt; only when a change is
                                               # meant to alter the numbers, and say so in the commit
    python tests/golden.py --out DIR           # compute every case into DIR (what tests/test_golden.py runs)

Both run under pinned numerics (``clipkit.determinism.pin_numerics``: one thread, AVX2 kernels, MKL's
COMPATIBLE branch), in a process of their own, so the stored and the recomputed tensors are the same bits on
any x86-64 machine; unpinned, an AMD EPYC missed the values stored on an earlier machine by more than ``TOL``.

Each case builds its trainer through ``build_trainer`` on a fake data set, feeds fixed random images and
returns named tensors: logits at initialisation, text features, and the loss terms of two optimizer steps.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys
import tempfile

import torch

HERE = osp.dirname(osp.abspath(__file__))
ROOT = osp.dirname(HERE)
DATA = osp.join(HERE, "data")
TOL = 1e-5  # the tolerance of the equivalence tests (fp32, CPU)


def _setup(tmp: str) -> dict:
    from clipkit.tiny import build_clip, save_clip
    from tools.fake_data import make_dataset, write_tiny_roles

    make_dataset(osp.join(tmp, "data"), "DescribableTextures", n_classes=6)
    return {"root": osp.join(tmp, "data"), "clip": save_clip(build_clip(seed=0), osp.join(tmp, "clip.pt")),
            "roles": write_tiny_roles(osp.join(tmp, "roles.json"))}


# Every trainer on the tiny CLIP (6 vision / 4 text layers): depths and layers scaled down from ViT-B/16's.
TINY_OPTS: dict[str, dict] = {
    "ZeroshotCLIP": {},
    "CoOp": {"TRAINER.COOP.N_CTX": 4},
    "CoCoOp": {"TRAINER.COCOOP.N_CTX": 4, "TRAINER.COCOOP.CTX_INIT": "a photo of a"},
    "IVLP": {"TRAINER.IVLP.PROMPT_DEPTH_VISION": 3, "TRAINER.IVLP.PROMPT_DEPTH_TEXT": 3},
    "MaPLe": {"TRAINER.MAPLE.PROMPT_DEPTH": 3},
    "PromptSRC": {"TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION": 3, "TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT": 3,
                  "TRAINER.PROMPTSRC.GPA_MEAN": 2, "TRAINER.PROMPTSRC.GPA_STD": 1},
    "MMRL": {"TRAINER.MMRL.REP_LAYERS": [2, 3, 4], "TRAINER.MMRL.REP_DIM": 32},
    "MMRLpp": {"TRAINER.MMRLpp.REP_LAYERS": [2, 3, 4], "TRAINER.MMRLpp.REP_DIM": 32,
               "TRAINER.MMRLpp.PROJ_LORA_DIM": 8},
    "DeAR": {},  # plus TRAINER.DEAR.ROLES_FILE, the tiny roles file
}
TERMS: dict[str, tuple[str, ...]] = {
    "DeAR": ("loss_ce", "loss_reg", "loss_fusion", "loss"),
    "PromptSRC": ("loss_ce", "loss_scl_text", "loss_scl_image", "loss_scl_logits", "loss"),
    "MMRL": ("loss_ce", "loss_ce_rep", "loss_cos_img", "loss_cos_text", "loss"),
    "MMRLpp": ("loss_ce", "loss_ce_rep", "loss_cos_img", "loss_cos_text", "loss"),
}


def tiny_opts(trainer: str, setup: dict) -> dict:
    opts = dict(TINY_OPTS[trainer])
    if trainer == "DeAR":
        opts["TRAINER.DEAR.ROLES_FILE"] = setup["roles"]
    return opts


def _trainer(s: dict, tmp: str, trainer: str, **opts):
    from conftest import make_cfg
    from dassl.engine import build_trainer

    base = {"DATASET.ROOT": s["root"], "DATASET.NAME": "DescribableTextures", "SEED": 1, "TRAINER.NAME": trainer,
            "OUTPUT_DIR": osp.join(tmp, "out"), "MODEL.BACKBONE.NAME": "ViT-B/16", "MODEL.BACKBONE.PATH": s["clip"],
            "INPUT.SIZE": (32, 32), "DATALOADER.NUM_WORKERS": 0, "DATALOADER.TRAIN_X.BATCH_SIZE": 4,
            "OPTIM.NAME": "adamw", "OPTIM.LR": 0.01, "OPTIM.MAX_EPOCH": 2, "OPTIM.LR_SCHEDULER": "cosine",
            "DATASET.SUBSAMPLE_CLASSES": "base"}
    base.update(opts)
    cfg = make_cfg(**base)
    cfg.VERBOSE = False
    cfg.freeze()
    torch.manual_seed(0)
    return build_trainer(cfg)


def _batches(n_classes: int, n: int = 2, b: int = 4) -> list[dict]:
    g = torch.Generator().manual_seed(123)
    return [{"img": torch.randn(b, 3, 32, 32, generator=g), "label": torch.randint(0, n_classes, (b,), generator=g)}
            for _ in range(n)]


def _steps(tr, batches: list[dict], terms: tuple[str, ...]) -> dict[str, torch.Tensor]:
    out = {}
    tr.set_model_mode("train")
    tr.num_batches = 10  # no lr step inside these two
    for i, batch in enumerate(batches):
        tr.batch_idx = i
        summary = tr.forward_backward(batch)
        for t in terms:
            out[f"step{i + 1}_{t}"] = torch.tensor(summary[t], dtype=torch.float64)
    return out


def case_dear(tmp: str) -> dict[str, torch.Tensor]:
    s = _setup(tmp)
    tr = _trainer(s, tmp, "DeAR", **{"TRAINER.DEAR.ROLES_FILE": s["roles"]})
    model = tr.model
    image = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        o = model(image)
    golden = {"logits": o["logits"], "logits_cls": o["logits_cls"], "logits_attr": o["logits_attr"],
              "text": o["text"], "text_frozen": model.text_frozen.clone()}
    golden.update(_steps(tr, _batches(tr.num_classes), ("loss_ce", "loss_reg", "loss_fusion", "loss")))
    with torch.no_grad():
        o = model(image)
    golden.update(logits_after=o["logits"], alpha_after=o["alpha"])
    return {k: v.detach().clone() for k, v in golden.items()}


def _case(trainer: str):
    def case(tmp: str) -> dict[str, torch.Tensor]:
        s = _setup(tmp)
        tr = _trainer(s, tmp, trainer, **tiny_opts(trainer, s))
        image = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(7))
        tr.set_model_mode("eval")
        with torch.no_grad():
            golden = {"logits": tr.model_inference(image)}
        golden.update(_steps(tr, _batches(tr.num_classes), TERMS.get(trainer, ("loss",))))
        tr.set_model_mode("eval")
        with torch.no_grad():
            golden["logits_after"] = tr.model_inference(image)
        return {k: v.detach().clone() for k, v in golden.items()}

    return case


CASES = {"dear": case_dear, **{t.lower(): _case(t) for t in TINY_OPTS if t not in ("DeAR", "ZeroshotCLIP")}}


def compute(name: str) -> dict[str, torch.Tensor]:
    with tempfile.TemporaryDirectory() as tmp:
        return CASES[name](tmp)


def path_of(name: str) -> str:
    return osp.join(DATA, f"golden_{name}.pt")


def main() -> None:
    from clipkit.determinism import pin_numerics

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", nargs="+", choices=sorted(CASES), help="rewrite these stored cases")
    mode.add_argument("--out", help="compute every case into this folder (golden_<case>.pt), store nothing")
    args = p.parse_args()
    pin_numerics()  # before the first tensor operation
    folder = args.out or DATA
    os.makedirs(folder, exist_ok=True)
    for name in args.write or sorted(CASES):
        torch.save(compute(name), osp.join(folder, osp.basename(path_of(name))))
        print(f"wrote {osp.join(folder, osp.basename(path_of(name)))}")


if __name__ == "__main__":
    sys.path[:0] = [ROOT, HERE]
    os.environ.setdefault("CLIP_OFFLINE", "1")
    import dasslite

    dasslite.use_dassl()
    main()
