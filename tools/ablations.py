"""DeAR's role and inference ablations (the paper's Tables 5 and 6) on one data set, through the protocol scripts.

    bash scripts/ablations.sh DATASET SEED [SEED ...]          # = python -m tools.ablations DATASET SEED ...
    python -m tools.ablations dtd 1 2 3 --variants role none k3 --roles q10=roles_q10.json q30=roles_q30.json

Each variant trains on the base classes and tests on the new ones with ``scripts/base2new_train.sh`` and
``base2new_test.sh`` in its own ``OUTPUT/ablations/<variant>/`` (finished runs are skipped by the scripts), with
the environment of those scripts (``DATA``, ``SHOTS``, ``OPTS``, ``PYTHON``). Variants:

- ``role``: DeAR as in the paper (role mask, K = 5, fusion inference);
- ``none`` / ``generalization_only`` / ``random_shuffle`` / ``isolate_all``: ``TRAINER.DEAR.MASK`` ablations
  (``random_shuffle`` draws a different shuffle per seed: ``MASK_SEED`` = the run's seed);
- ``k3`` / ``k7``: ``TRAINER.DEAR.ATTRIBUTES`` from :func:`head_roles.attribute_set` of the run's roles file;
- ``decoupled``: the ``role`` model tested on the new classes with [CLS] only (Table 5's decoupled inference; on
  the base classes decoupled inference is the fusion, so the base numbers are ``role``'s);
- ``--roles NAME=FILE``: DeAR with another roles file each (e.g. discovered with other entropy thresholds,
  Table 6's left half), as variant ``roles_NAME``.

The end prints a table of Base / Novel / HM, mean +- population std over the seeds (as CoOp's parser), per variant.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import shlex
import statistics
import subprocess
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
MASK_VARIANTS = ("none", "generalization_only", "random_shuffle", "isolate_all")
VARIANTS = ("role",) + MASK_VARIANTS + ("k3", "k7", "decoupled")


def _opt(opts: list[str], name: str, default: str = "") -> str:
    """The value of ``name`` in a ``KEY VALUE`` list (the last one wins, as in yacs)."""
    values = [opts[i + 1] for i in range(0, len(opts) - 1, 2) if opts[i] == name]
    return values[-1] if values else default


def attribute_list(opts: list[str], k: int) -> str:
    """``['a','b',...]`` (no spaces: the scripts split OPTS on whitespace) for K attributes of the run's roles."""
    from head_roles import attribute_set, load_roles

    roles = load_roles(_opt(opts, "TRAINER.DEAR.ROLES_FILE") or _opt(opts, "MODEL.BACKBONE.NAME", "ViT-B/16"))
    return "[" + ",".join(f"'{a}'" for a in attribute_set(roles, k)) + "]"


def variant_opts(variant: str, seed: int, opts: list[str], roles: dict[str, str]) -> list[str]:
    if variant in MASK_VARIANTS:
        return ["TRAINER.DEAR.MASK", variant, "TRAINER.DEAR.MASK_SEED", str(seed)]
    if variant in ("k3", "k7"):
        return ["TRAINER.DEAR.ATTRIBUTES", attribute_list(opts, int(variant[1]))]
    if variant.startswith("roles_"):
        return ["TRAINER.DEAR.ROLES_FILE", roles[variant[len("roles_"):]]]
    return []


def run_dir(out: str, variant: str, split: str, dataset: str, shots: str, seed: int) -> str:
    return osp.join(out, variant, "base2new", split, dataset, f"shots_{shots}", "DeAR", "dear", f"seed{seed}")


def run(variant: str, dataset: str, seed: int, out: str, opts: list[str], roles: dict[str, str]) -> None:
    env = dict(os.environ, OUTPUT=osp.join(out, variant))
    shots = env.get("SHOTS", "16")
    extra = variant_opts(variant, seed, opts, roles)
    scripts = ["base2new_train.sh", "base2new_test.sh"]
    if variant == "decoupled":  # the role model, tested differently: link its training run
        target = run_dir(out, "decoupled", "train_base", dataset, shots, seed)
        source = run_dir(out, "role", "train_base", dataset, shots, seed)
        if not osp.exists(target):
            os.makedirs(osp.dirname(target), exist_ok=True)
            os.symlink(osp.abspath(source), target)
        extra = ["TRAINER.DEAR.INFERENCE", "decoupled"]
        scripts = ["base2new_test.sh"]
    env["OPTS"] = " ".join(opts + extra)
    for script in scripts:
        print(f"== {variant} seed {seed}: {script}", flush=True)
        subprocess.run(["bash", osp.join(ROOT, "scripts", script), dataset, str(seed), "DeAR"], env=env,
                       check=True, cwd=ROOT)


def table(out: str, variants: list[str], dataset: str, seeds: list[int]) -> str:
    sys.path.insert(0, ROOT)
    from parse_test_res import harmonic_mean, run_accuracy

    shots = os.environ.get("SHOTS", "16")
    lines = [f"DeAR ablations on {dataset} ({len(seeds)} seeds; mean +- population std)", "",
             "| Variant | Base | Novel | HM |", "|---|---|---|---|"]
    for v in variants:
        base_variant = "role" if v == "decoupled" else v
        rows = []
        for s in seeds:
            b = run_accuracy(run_dir(out, base_variant, "train_base", dataset, shots, s))
            n = run_accuracy(run_dir(out, v, "test_new", dataset, shots, s))
            if b is not None and n is not None:
                rows.append((b, n, harmonic_mean(b, n)))
        if not rows:
            lines.append(f"| {v} | - | - | - |")
            continue
        cells = [f"{statistics.mean(c):.2f} +- {statistics.pstdev(c):.2f}" for c in zip(*rows)]
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset")
    p.add_argument("seeds", nargs="+", type=int)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS))
    p.add_argument("--roles", nargs="*", default=[], metavar="NAME=FILE", help="extra variants with other roles files")
    p.add_argument("--table-only", action="store_true", help="print the table of what has run, run nothing")
    args = p.parse_args(argv)
    roles = dict(item.split("=", 1) for item in args.roles)
    variants = list(args.variants) + [f"roles_{name}" for name in roles]
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    if "decoupled" in variants and "role" not in variants:
        variants.insert(0, "role")  # decoupled reuses the role model
    out = osp.join(os.environ.get("OUTPUT", osp.join(ROOT, "output")), "ablations")
    opts = shlex.split(os.environ.get("OPTS", ""))
    if not args.table_only:
        for seed in args.seeds:
            for v in sorted(variants, key=lambda v: v == "decoupled"):
                run(v, args.dataset, seed, out, opts, roles)
    print(table(out, variants, args.dataset, args.seeds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
