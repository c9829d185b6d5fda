"""Concept Entropy from the command line: discover the head roles of any OpenAI-CLIP ViT, offline.

    python -m head_roles.discover --backbone ViT-B/16 --images DIR --out head_roles/vit_b16_discovered.json
    python -m head_roles.discover --backbone ViT-B/16 --root DATA \\
        --dataset-config-file configs/datasets/imagenet.yaml --out roles.json --num-images 500
      [--weights FILE] [--layers 4] [--texts-per-head 10] [--corpus FILE] [--seeds FILE.json]
      [--cluster-selection leaf|eom] [--core-attributes color,shape,...]
      [--quantile Q | --specialized-quantile QS --generalization-quantile QG]        (rule "quantile", default)
      [--rule threshold --specialized-threshold TS --generalization-threshold TG]
      [--compare head_roles/vit_b16.json] [--cache-dir DIR]

Role rules (head_roles/concept_entropy.py):
  quantile   the lowest QS of the heads' entropies are specialized, the highest QG generalization, the rest
             mixed (the supplementary's text: 0.2 and 0.2). --quantile Q sets both tails to Q: Table 6's
             "Top Q" (0.1, 0.2, 0.3, 0.4); Q = 0.5 leaves no mixed head.
  threshold  on the normalised entropy H / log(12) (0: one concept, 1: spread over all 12): at most TS
             specialized, at least TG generalization, the rest mixed; the proportions follow the entropies, so
             they can be Table 2's 36 / 7 / 5. The paper gives no values: read the heads' normalised_entropy in a
             quantile run's JSON (or the summary this command prints) and choose.
Specialized heads are attribute heads when their dominant concept is a core attribute, else other specialized.

Everything is computed by the library, head_roles.discover; this module parses arguments and, for
--dataset-config-file, reads the data set through the repo's datasets package and clipkit.config.load_config.
Stages are cached under --cache-dir (default <out>.cache/): another rule reruns in seconds.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import os.path as osp
import random
import sys

from .concept_entropy import CLUSTER_SELECTIONS, DEFAULT_CORE, DiscoveryError, QuantileRule, ThresholdRule
from .roles import ROLES


def dataset_images(root: str, dataset_config_file: str) -> list[str]:
    """Image paths of a data set of ``datasets/`` (its train split, else its test split), read with the project's
    config loader: ``DATASET.ROOT = root`` merged onto the defaults and ``dataset_config_file``."""
    import dasslite

    dasslite.use_dassl()
    from dassl.data.datasets import build_dataset

    from clipkit.config import load_config

    try:
        import datasets  # noqa: F401  (this repository's datasets/: registers the data sets)
    except ImportError as e:
        raise DiscoveryError(f"--dataset-config-file reads data sets through the repository's datasets/ package, "
                             f"which cannot be imported here ({e}): run from a checkout of the repository, or pass "
                             "--images DIR") from None

    cfg = load_config(dataset_config_file=dataset_config_file, overrides={"DATASET.ROOT": root})
    ds = build_dataset(cfg)
    paths = [d.impath for d in (ds.train_x or ds.test)]
    if not paths:
        raise DiscoveryError(f"{cfg.DATASET.NAME} under {root} has no images")
    return paths


def folder_images(folder: str) -> list[str]:
    from clipkit.images import list_images

    try:
        return list_images(folder)
    except FileNotFoundError as e:
        raise DiscoveryError(f"--images: {e}") from e


def rule_from_args(args: argparse.Namespace) -> QuantileRule | ThresholdRule:
    """The role rule the flags ask for; flags of the other rule, or both --quantile and a per-tail quantile,
    are refused."""
    quantile_flags = {"--quantile": args.quantile, "--specialized-quantile": args.specialized_quantile,
                      "--generalization-quantile": args.generalization_quantile}
    threshold_flags = {"--specialized-threshold": args.specialized_threshold,
                       "--generalization-threshold": args.generalization_threshold}
    given = lambda flags: [k for k, v in flags.items() if v is not None]  # noqa: E731
    if args.rule == "threshold":
        if given(quantile_flags):
            raise DiscoveryError(f"{', '.join(given(quantile_flags))}: only with --rule quantile")
        missing = [k for k, v in threshold_flags.items() if v is None]
        if missing:
            raise DiscoveryError(f"--rule threshold needs {' and '.join(missing)} (normalised entropy in [0, 1]; "
                                 "the paper gives no values: see the heads' normalised_entropy of a quantile run)")
        return ThresholdRule(args.specialized_threshold, args.generalization_threshold)
    if given(threshold_flags):
        raise DiscoveryError(f"{', '.join(given(threshold_flags))}: only with --rule threshold")
    if args.quantile is not None:
        if args.specialized_quantile is not None or args.generalization_quantile is not None:
            raise DiscoveryError("give --quantile (both tails) or --specialized-quantile / --generalization-quantile, "
                                 "not both")
        return QuantileRule.top(args.quantile)
    return QuantileRule(0.2 if args.specialized_quantile is None else args.specialized_quantile,
                        0.2 if args.generalization_quantile is None else args.generalization_quantile)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m head_roles.discover", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="ViT-B/16", help="OpenAI CLIP name (weights found as by train.py)")
    p.add_argument("--weights", default="", help="a CLIP weights file (MODEL.BACKBONE.PATH)")
    p.add_argument("--images", default="", help="a folder of images (searched recursively)")
    p.add_argument("--root", default="", help="with --dataset-config-file: a data set from datasets/")
    p.add_argument("--dataset-config-file", default="", help="e.g. configs/datasets/imagenet.yaml")
    p.add_argument("--out", required=True, help="roles JSON to write (a .png map is written beside it)")
    p.add_argument("--layers", type=int, default=4, help="analyse the last N layers")
    p.add_argument("--num-images", type=int, default=500, help="at most this many images (a seeded sample)")
    p.add_argument("--texts-per-head", type=int, default=10)
    p.add_argument("--rule", choices=("quantile", "threshold"), default="quantile",
                   help="how entropies become roles (default: quantile, the paper's text)")
    p.add_argument("--quantile", type=float, default=None,
                   help="quantile rule, both tails: Table 6's 'Top Q' (0.1 / 0.2 / 0.3 / 0.4)")
    p.add_argument("--specialized-quantile", type=float, default=None, help="quantile rule, lowest tail (0.2)")
    p.add_argument("--generalization-quantile", type=float, default=None, help="quantile rule, highest tail (0.2)")
    p.add_argument("--specialized-threshold", type=float, default=None,
                   help="threshold rule: normalised entropy at most this is specialized")
    p.add_argument("--generalization-threshold", type=float, default=None,
                   help="threshold rule: normalised entropy at least this is generalization")
    p.add_argument("--core-attributes", default=",".join(DEFAULT_CORE))
    p.add_argument("--min-cluster-size", type=int, default=5)
    p.add_argument("--corpus", default="", help="a text file of descriptions (default: the built-in corpus)")
    p.add_argument("--seeds", default="",
                   help="a JSON file {concept: [phrase, ...]} naming the clusters (default: the paper's 12 concepts)")
    p.add_argument("--cluster-selection", choices=CLUSTER_SELECTIONS, default="leaf",
                   help="HDBSCAN cluster selection (default: leaf; eom is HDBSCAN's own default)")
    p.add_argument("--cache-dir", default="", help="default: <out>.cache/")
    p.add_argument("--seed", type=int, default=0, help="seed of the --num-images sample")
    p.add_argument("--compare", default="", help="another roles JSON to compare with")
    return p


def run(args: argparse.Namespace) -> None:
    """Discover, write the roles JSON and its PNG map, print a summary (and the comparison). Raises on errors."""
    import numpy as np

    from clipkit import load_clip
    from clipkit.loader import resolve_clip_weights

    from .discover import compare, discover, file_id, load_seeds, plot_roles
    from .roles import load_roles

    rule = rule_from_args(args)  # before anything slow
    seeds = load_seeds(args.seeds) if args.seeds else None
    if bool(args.images) == bool(args.root and args.dataset_config_file):
        raise DiscoveryError("give either --images DIR or --root with --dataset-config-file")
    paths = folder_images(args.images) if args.images else dataset_images(args.root, args.dataset_config_file)
    if len(paths) > args.num_images:
        paths = sorted(random.Random(args.seed).sample(paths, args.num_images))
    weights = resolve_clip_weights(args.backbone, args.weights)
    model = load_clip(args.backbone, args.weights)
    corpus = None
    if args.corpus:
        with open(args.corpus) as f:
            corpus = [line.strip() for line in f if line.strip()]
    roles = discover(model, paths, corpus=corpus, seeds=seeds, cluster_selection=args.cluster_selection, rule=rule,
                     n_layers=args.layers, texts_per_head=args.texts_per_head,
                     core=[c.strip() for c in args.core_attributes.split(",") if c.strip()],
                     min_cluster_size=args.min_cluster_size, cache_dir=args.cache_dir or args.out + ".cache",
                     model_id=json.dumps(file_id(weights)),
                     backbone=args.backbone if not args.weights else osp.basename(args.weights))
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    roles.save(args.out)
    png = osp.splitext(args.out)[0] + ".png"
    plot_roles(roles, png)
    counts = roles.role_counts()
    print(f"wrote {args.out} and {png} ({rule.name} rule): " + ", ".join(f"{r} {counts.get(r, 0)}" for r in ROLES))
    hn = np.array([h.extra["normalised_entropy"] for h in roles.heads])
    q = np.quantile(hn, [0.0, 0.2, 0.5, 0.8, 1.0])
    print("normalised entropy over heads: min {:.3f}, 20% {:.3f}, median {:.3f}, 80% {:.3f}, max {:.3f}".format(*q))
    tied = roles.meta["provenance"]["heads_tied_across_roles"]
    if tied:  # only the quantile rule can separate equal entropies
        print(f"note: {tied} heads share their exact entropy with a head of another role; the quantile rule ordered "
              "them by (layer, head) (the threshold rule gives equal entropies one role)")
    if args.compare:
        print(compare(roles, load_roles(args.compare)))


def main(argv: list[str] | None = None) -> int:
    """Exit status 0, or 2 with a one-line ``error: ...`` on bad input (``DEAR_TRACEBACK=1`` shows the traceback)."""
    from clipkit.determinism import pin_if_requested

    pin_if_requested()  # DEAR_NUMERICS=pinned: the same bits on every machine
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        run(args)
    except (ValueError, FileNotFoundError) as e:  # DiscoveryError, ConfigError, RolesFileError, missing weights
        if os.environ.get("DEAR_TRACEBACK"):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
