"""Classify an image or a folder of images with a trained model of any trainer and a list of class names.

    python -m trainers.predict --model-dir output/.../seed1 --load-epoch 10 \\
        --classnames "banded,striped,dotted" --image path/to/img_or_folder [--topk 5] [KEY VALUE ...]

The run folder is enough: its ``config.yaml`` (written by every training run) gives the trainer, the CLIP
weights, the roles file, the input size and every setting; ``--config-file`` and ``KEY VALUE`` overrides are
merged on top (e.g. another ``TRAINER.DEAR.INFERENCE``). The folder is checked before CLIP is loaded. The model
is built by its trainer's ``make_model``, as in training. Prints, per image, the top-k classes and what the
model says about its prediction (DeAR: per path, [CLS] and every attribute token, its fusion weight and its own
top-1 class).
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys

import torch

import dasslite

dasslite.use_dassl()

from dassl.data.transforms import build_transform  # noqa: E402
from dassl.engine import TRAINER_REGISTRY  # noqa: E402
from dassl.utils import read_image  # noqa: E402

import runs  # noqa: E402
import trainers  # noqa: E402,F401  (registers the trainers)
from clipkit import load_clip, template_for  # noqa: E402
from clipkit.config import ConfigError, default_config, load_config  # noqa: E402
from clipkit.images import list_images  # noqa: E402
from clipkit.trainer import LEARNER_NAME, check_input_size, load_learner  # noqa: E402


def read_classnames(arg: str) -> list[str]:
    if osp.isfile(arg):
        with open(arg) as f:
            names = [line.strip() for line in f if line.strip()]
    else:
        names = [n.strip() for n in arg.split(",") if n.strip()]
    if len(names) < 2:
        raise ValueError("--classnames needs at least two classes (comma-separated, or a file with one per line)")
    return names


def run_config(args: argparse.Namespace):
    """The run's own config (``config.yaml``) with ``--config-file`` and the overrides merged on top."""
    runs.check_run(args.model_dir, epoch=args.load_epoch, need_config=not args.config_file)
    saved = osp.join(args.model_dir, runs.CONFIG_FILE)
    base = runs.load_run_config(args.model_dir, default_config()) if osp.isfile(saved) else None
    return load_config(args.config_file, opts=args.opts, base=base)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", required=True, help="the training output folder (holds prompt_learner/)")
    p.add_argument("--load-epoch", type=int, help="epoch to load (default: model-best.pth.tar)")
    p.add_argument("--classnames", required=True, help="comma-separated names, or a file with one per line")
    p.add_argument("--image", required=True, help="an image file or a folder of images")
    p.add_argument("--config-file", default="", help="merged onto the run's config.yaml (needed for older runs)")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides (as for train.py)")
    args = p.parse_args(argv)
    try:
        classnames = read_classnames(args.classnames)
        images = list_images(args.image)
        cfg = run_config(args)
        predict(cfg, args, classnames, images)
    except (ConfigError, ValueError, FileNotFoundError, runs.RunFolderError) as e:
        if os.environ.get("DEAR_TRACEBACK"):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def predict(cfg, args: argparse.Namespace, classnames: list[str], images: list[str]) -> None:
    trainer_cls = TRAINER_REGISTRY.get(cfg.TRAINER.NAME or "DeAR")
    device = torch.device("cuda" if torch.cuda.is_available() and cfg.USE_CUDA else "cpu")
    clip_model = load_clip(cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.PATH, device)
    check_input_size(cfg, clip_model)
    model = trainer_cls.make_model(cfg, clip_model, classnames=classnames).to(device).eval()
    if model.learner is not None:
        ckpt = "model-best.pth.tar" if args.load_epoch is None else f"model.pth.tar-{args.load_epoch}"
        load_learner(model.learner, osp.join(args.model_dir, LEARNER_NAME, ckpt))
    model.set_classes(classnames, template_for(cfg.DATASET.NAME, cfg.DATASET.PROMPT_TEMPLATE))
    tfm = build_transform(cfg, is_train=False)
    for line in model.summary():
        print(line)
    k = min(args.topk, len(classnames))
    for path in images:
        image = tfm(read_image(path)).unsqueeze(0).to(device)
        with torch.no_grad():
            out = model(image)
        top = out["logits"][0].softmax(-1).topk(k)
        print(f"\n{path}")
        for p_, i in zip(top.values.tolist(), top.indices.tolist()):
            print(f"  {p_:6.1%}  {classnames[i]}")
        for line in model.explain(out, 0):
            print(f"  {line}")


if __name__ == "__main__":
    sys.exit(main())
