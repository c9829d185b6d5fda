"""Train or evaluate a CLIP prompt-learning trainer: the CoOp-family command line.

    python train.py --root DATA --trainer DeAR --dataset-config-file configs/datasets/dtd.yaml \
        --config-file configs/dear.yaml --output-dir output/run --seed 1 DATASET.NUM_SHOTS 16

Config merge order: defaults -> dataset YAML -> trainer YAML -> command-line flags -> trailing KEY VALUE
overrides -> freeze (so a mistyped key fails loudly).
"""
from __future__ import annotations

import argparse
import sys

import torch

import dasslite

ENGINE = dasslite.use_dassl()

from dassl.engine import build_trainer  # noqa: E402
from dassl.utils import collect_env_info, set_random_seed, setup_logger  # noqa: E402

import datasets  # noqa: E402,F401  (registers every data set)
import trainers  # noqa: E402,F401  (registers every trainer)
from clipkit.config import ConfigError, load_config  # noqa: E402


def print_args(args: argparse.Namespace, cfg) -> None:
    print("***************")
    print("** Arguments **")
    print("***************")
    for key in sorted(args.__dict__):
        print(f"{key}: {args.__dict__[key]}")
    print("************")
    print("** Config **")
    print("************")
    print(cfg)


def flag_overrides(args: argparse.Namespace) -> dict:
    """Command-line flags override the YAML files."""
    pairs = [("DATASET.ROOT", args.root), ("OUTPUT_DIR", args.output_dir), ("RESUME", args.resume),
             ("SEED", args.seed), ("DATASET.SOURCE_DOMAINS", args.source_domains),
             ("DATASET.TARGET_DOMAINS", args.target_domains), ("INPUT.TRANSFORMS", args.transforms),
             ("TRAINER.NAME", args.trainer), ("MODEL.BACKBONE.NAME", args.backbone), ("MODEL.HEAD.NAME", args.head)]
    return {k: v for k, v in pairs if v is not None and v != "" and v != []}


def setup_cfg(args: argparse.Namespace):
    try:
        return load_config(args.config_file, args.dataset_config_file, args.opts, overrides=flag_overrides(args))
    except ConfigError as e:
        sys.exit(f"error: {e}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=str, default="", help="path to the data sets folder")
    parser.add_argument("--output-dir", type=str, default="", help="output directory")
    parser.add_argument("--resume", type=str, default="", help="checkpoint directory to resume from")
    parser.add_argument("--seed", type=int, default=None, help="seed (negative: no seeding)")
    parser.add_argument("--source-domains", type=str, nargs="+", help="source domains (DG)")
    parser.add_argument("--target-domains", type=str, nargs="+", help="target domains (DG)")
    parser.add_argument("--transforms", type=str, nargs="+", help="data augmentation methods")
    parser.add_argument("--config-file", type=str, default="", help="trainer config file")
    parser.add_argument("--dataset-config-file", type=str, default="", help="dataset config file")
    parser.add_argument("--trainer", type=str, default="", help="trainer name, e.g. DeAR or ZeroshotCLIP")
    parser.add_argument("--backbone", type=str, default="", help="CLIP backbone name, e.g. ViT-B/16")
    parser.add_argument("--head", type=str, default="", help="name of head (unused by CLIP trainers)")
    parser.add_argument("--eval-only", action="store_true", help="evaluation only")
    parser.add_argument("--model-dir", type=str, default="", help="load model from this directory for eval-only")
    parser.add_argument("--load-epoch", type=int, help="load the weights saved at this epoch")
    parser.add_argument("--no-train", action="store_true", help="do not call trainer.train()")
    parser.add_argument("--print-config", action="store_true", help="print the merged config and exit")
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER,
                        help="modify config options using the command line (KEY VALUE pairs)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    cfg = setup_cfg(args)
    if args.print_config:
        print(cfg)
        return
    if cfg.SEED >= 0:
        print(f"Setting fixed seed: {cfg.SEED}")
        set_random_seed(cfg.SEED)
    setup_logger(cfg.OUTPUT_DIR)
    if torch.cuda.is_available() and cfg.USE_CUDA:
        torch.backends.cudnn.benchmark = True
    print(f"Engine: {'Dassl.pytorch' if ENGINE == 'dassl' else 'built-in dasslite'}")
    print_args(args, cfg)
    print("Collecting env info ...")
    print(f"** System info **\n{collect_env_info()}\n")

    trainer = build_trainer(cfg)
    if args.eval_only:
        trainer.load_model(args.model_dir, epoch=args.load_epoch)
        trainer.test()
        return
    if not args.no_train:
        trainer.train()


if __name__ == "__main__":
    main()
