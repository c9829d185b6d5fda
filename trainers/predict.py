"""Classify an image or a folder of images with a trained DeAR model and a list of class names.

    python -m trainers.predict --model-dir output/.../seed1 --load-epoch 10 \\
        --classnames "banded,striped,dotted" --image path/to/img_or_folder [--config-file configs/dear.yaml] \\
        [--topk 5] [KEY VALUE ...]

Prints, per image, the top-k classes of the fused prediction and, for each path ([CLS] and every attribute
token), its fusion weight alpha and its own top-1 class.
"""
from __future__ import annotations

import argparse
import os.path as osp

import torch

import dasslite

dasslite.use_dassl()

from dassl.config import get_cfg_default  # noqa: E402
from dassl.data.transforms import build_transform  # noqa: E402
from dassl.utils import read_image  # noqa: E402

from clipkit import load_clip, template_for  # noqa: E402
from clipkit.images import list_images  # noqa: E402
from clipkit.text import class_prompts  # noqa: E402
from head_roles import load_roles  # noqa: E402
from trainers import extend_cfg  # noqa: E402
from trainers.dear import DeARModel, load_learner  # noqa: E402


def read_classnames(arg: str) -> list[str]:
    if osp.isfile(arg):
        with open(arg) as f:
            names = [line.strip() for line in f if line.strip()]
    else:
        names = [n.strip() for n in arg.split(",") if n.strip()]
    if len(names) < 2:
        raise ValueError("--classnames needs at least two classes (comma-separated, or a file with one per line)")
    return names


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", required=True, help="the training output folder (holds prompt_learner/)")
    p.add_argument("--load-epoch", type=int, help="epoch to load (default: model-best.pth.tar)")
    p.add_argument("--classnames", required=True, help="comma-separated names, or a file with one per line")
    p.add_argument("--image", required=True, help="an image file or a folder of images")
    p.add_argument("--config-file", default="configs/dear.yaml")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides (as for train.py)")
    args = p.parse_args(argv)

    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    device = torch.device("cuda" if torch.cuda.is_available() and cfg.USE_CUDA else "cpu")
    clip_model = load_clip(cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.PATH, device)
    roles = load_roles(cfg.TRAINER.DEAR.ROLES_FILE or cfg.MODEL.BACKBONE.NAME)
    model = DeARModel(clip_model, roles, cfg.TRAINER.DEAR).to(device).eval()
    ckpt = "model-best.pth.tar" if args.load_epoch is None else f"model.pth.tar-{args.load_epoch}"
    load_learner(model.learner, osp.join(args.model_dir, "prompt_learner", ckpt), f"roles file {roles.source}")
    classnames = read_classnames(args.classnames)
    model.set_classes(class_prompts(classnames, template_for(cfg.DATASET.NAME, cfg.DATASET.PROMPT_TEMPLATE)))
    model.cache_text_features()
    tfm = build_transform(cfg, is_train=False)
    paths = ("cls",) + model.learner.attributes
    alpha = model.learner.alpha.tolist()
    print("fusion weights: " + ", ".join(f"{n}={a:.3f}" for n, a in zip(paths, alpha)))
    k = min(args.topk, len(classnames))
    for path in list_images(args.image):
        image = tfm(read_image(path)).unsqueeze(0).to(device)
        with torch.no_grad():
            out = model(image)
        probs = out["logits"][0].softmax(-1)
        top = probs.topk(k)
        print(f"\n{path}")
        for p_, i in zip(top.values.tolist(), top.indices.tolist()):
            print(f"  {p_:6.1%}  {classnames[i]}")
        per_path = [out["logits_cls"][0]] + list(out["logits_attr"][0])
        print("  per path: " + "; ".join(
            f"{n} (alpha {a:.3f}) -> {classnames[int(lg.argmax())]}" for n, a, lg in zip(paths, alpha, per_path)))


if __name__ == "__main__":
    main()
