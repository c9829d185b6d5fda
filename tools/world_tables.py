"""Tables and the Figure-2 heatmap of scripts/world_benchmark.sh, from finished run folders.

    python -m tools.world_tables b2n output/world/base2new
    python -m tools.world_tables roles output/world/base2new output/world/roles/base2new
    python -m tools.world_tables xd output/world/xd --source world_mixed
    python -m tools.world_tables fusion output/world/base2new/train_base --out output/world/figures/fusion.png

``b2n``: base, new and HM per method and data set, mean +- population std over seeds, then a summary (HM per
data set, averages). ``roles``: the same methods without and with role-routed prompts (two base2new roots) side
by side. ``xd``: accuracy on the source and on each target, mean +- population std over seeds, per method (the
paper's cross-dataset table). ``fusion``: DeAR's learned fusion weights alpha (softmax of the learner's
``fusion_weights``, [CLS] first) per data set, averaged over seeds, next to their initial values, as a table and
a heatmap (the paper's Figure 2: do the weights follow the data set?).
"""
from __future__ import annotations

import argparse
import glob
import os.path as osp

import numpy as np
import torch

import runs


def _mean_std(values: list[float]) -> str:
    return f"{np.mean(values):.2f} +- {np.std(values):.2f}" if values else "-"


def xd_table(xd_dir: str, source: str) -> str:
    """Markdown: rows = methods, columns = source then each target (mean +- std over seeds) and their average."""
    acc: dict[str, dict[str, list[float]]] = {}
    targets = set()
    for run in sorted(glob.glob(osp.join(xd_dir, "train", source, "shots_*", "*", "*", "seed*"))):
        method = "/".join(run.split(osp.sep)[-3:-1])
        if (a := runs.run_result(run)) is not None:
            acc.setdefault(method, {}).setdefault(source, []).append(a)
    for run in sorted(glob.glob(osp.join(xd_dir, "test", f"{source}_to_*", "shots_*", "*", "*", "seed*"))):
        parts = run.split(osp.sep)
        target, method = parts[-5][len(source) + 4:], "/".join(parts[-3:-1])
        if (a := runs.run_result(run)) is not None:
            targets.add(target)
            acc.setdefault(method, {}).setdefault(target, []).append(a)
    cols = [source, *sorted(targets)]
    lines = ["| method | " + " | ".join(cols) + " | average (targets) |", "|---" * (len(cols) + 2) + "|"]
    for method, by in sorted(acc.items()):
        means = [np.mean(by[t]) for t in sorted(targets) if by.get(t)]
        average = f"{np.mean(means):.2f}" if means else "-"
        lines.append(f"| {method} | " + " | ".join(_mean_std(by.get(c, [])) for c in cols) + f" | {average} |")
    return "\n".join(lines)


def collect(root: str) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """``{method: {dataset: {"base": {seed: acc}, "novel": {seed: acc}}}}`` from a base2new root (method: the
    trainer's name, with its config where the root holds several configs of one trainer)."""
    from parse_test_res import collect_seeds

    found = collect_seeds(root)
    configs: dict[str, int] = {}
    for trainer, _ in found:
        configs[trainer] = configs.get(trainer, 0) + 1
    return {(trainer if configs[trainer] == 1 else f"{trainer} ({config})"): by
            for (trainer, config), by in found.items()}


def b2n_table(root: str) -> str:
    """Markdown: every (method, data set) with base / new / HM (mean +- std over seeds, seeds counted), then a
    summary: HM per data set and the averages over data sets."""
    from parse_test_res import harmonic_mean

    data = collect(root)
    lines = ["| method | data set | seeds | base | new | HM |", "|---|---|---|---|---|---|"]
    datasets = sorted({ds for by in data.values() for ds in by})
    summary = ["| method | " + " | ".join(f"{ds} HM" for ds in datasets) + " | base | new | HM |",
               "|---" * (len(datasets) + 4) + "|"]
    for method, by in sorted(data.items()):
        hms, bs, ns = {}, [], []
        for ds, v in sorted(by.items()):
            if "base" in v and "novel" in v:
                base, novel = list(v["base"].values()), list(v["novel"].values())
                b, n = np.mean(base), np.mean(novel)
                hms[ds] = harmonic_mean(b, n)
                bs.append(b)
                ns.append(n)
                seeds = min(len(base), len(novel))
                lines.append(f"| {method} | {ds} | {seeds} | {_mean_std(base)} | {_mean_std(novel)} | "
                             f"{hms[ds]:.2f} |")
        if bs:
            b, n = np.mean(bs), np.mean(ns)
            summary.append(f"| {method} | " + " | ".join(f"{hms[ds]:.2f}" if ds in hms else "-" for ds in datasets)
                           + f" | {b:.2f} | {n:.2f} | {harmonic_mean(b, n):.2f} |")
    return "\n".join(lines) + "\n\n" + "\n".join(summary)


def roles_table(plain_root: str, roles_root: str) -> str:
    """Markdown: each method and data set of ``roles_root`` with and without role routing (base / new / HM,
    means over the seeds that all four runs, base and new with and without roles, have), and the change in HM."""
    from parse_test_res import harmonic_mean

    plain, routed = collect(plain_root), collect(roles_root)
    lines = ["| method | data set | seeds | without roles: base / new / HM | with roles: base / new / HM | HM change |",
             "|---|---|---|---|---|---|"]
    for method, by in sorted(routed.items()):
        for ds, v in sorted(by.items()):
            w = plain.get(method, {}).get(ds, {})
            if not all(k in d for d in (v, w) for k in ("base", "novel")):
                continue
            seeds = set(v["base"]) & set(v["novel"]) & set(w["base"]) & set(w["novel"])
            if not seeds:
                continue
            cells = []
            for d in (w, v):
                b, n = (np.mean([d[k][s] for s in sorted(seeds)]) for k in ("base", "novel"))
                cells.append((b, n, harmonic_mean(b, n)))
            lines.append(f"| {method} | {ds} | {len(seeds)} | "
                         + " | ".join(f"{b:.2f} / {n:.2f} / {h:.2f}" for b, n, h in cells)
                         + f" | {cells[1][2] - cells[0][2]:+.2f} |")
    return "\n".join(lines)


def _alpha(checkpoint: str) -> np.ndarray:
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    (key,) = [k for k in state if k.endswith("fusion_weights")]
    return state[key].float().softmax(0).numpy()


def fusion_by_dataset(train_dir: str, trainer: str = "DeAR", config: str = "dear"
                      ) -> tuple[dict[str, np.ndarray], dict[str, float], list[str]]:
    """Mean alpha per data set over its seeds' last checkpoints, the largest change from the initial value per
    data set, and the path names ([CLS] and the attributes of the run's roles file)."""
    from head_roles import load_roles

    rows, moved, names = {}, {}, []
    for ds_dir in sorted(glob.glob(osp.join(train_dir, "*"))):
        seeds = sorted(glob.glob(osp.join(ds_dir, "shots_*", trainer, config, "seed*")))
        alphas = []
        for run in seeds:
            ckpts = sorted(glob.glob(osp.join(run, "prompt_learner", "model.pth.tar-*")),
                           key=lambda f: int(f.rsplit("-", 1)[1]))
            if ckpts and runs.run_result(run) is not None:
                alphas.append(_alpha(ckpts[-1]))
                if not names:
                    cfg = runs.load_run_config(run)  # the saved tree as it is
                    names = ["[CLS]", *load_roles(cfg.TRAINER.DEAR.ROLES_FILE).core_attributes]
                    init_cls = cfg.TRAINER.DEAR.FUSION_INIT_CLS
        if alphas:
            mean = np.mean(alphas, axis=0)
            init = np.array([init_cls] + [(1 - init_cls) / (len(mean) - 1)] * (len(mean) - 1))
            rows[osp.basename(ds_dir)] = mean
            moved[osp.basename(ds_dir)] = float(np.abs(np.array(alphas) - init).max())
    return rows, moved, names


def fusion_report(train_dir: str, out: str) -> str:
    from tools.figures import fusion_heatmap

    rows, moved, names = fusion_by_dataset(train_dir)
    if not rows:
        raise SystemExit(f"no finished DeAR runs under {train_dir}")
    fusion_heatmap({k: v.tolist() for k, v in rows.items()}, names, out)
    lines = ["| data set | " + " | ".join(names) + " | largest change from init (any seed) |",
             "|---" * (len(names) + 2) + "|"]
    for ds, a in rows.items():
        spread = float(a[1:].max() - a[1:].min())
        top = names[1 + int(np.argmax(a[1:]))] if spread >= 1e-3 else f"none, spread {spread:.1e}"
        lines.append(f"| {ds} | " + " | ".join(f"{v:.4f}" for v in a) + f" | {moved[ds]:.4f} (top attribute: {top}) |")
    return "\n".join(lines) + f"\n\nwrote {out}"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    b = sub.add_parser("b2n", help="base-to-novel table with std over seeds, and a summary")
    b.add_argument("dir")
    r = sub.add_parser("roles", help="methods without and with role-routed prompts")
    r.add_argument("plain")
    r.add_argument("routed")
    x = sub.add_parser("xd", help="cross-dataset table")
    x.add_argument("dir")
    x.add_argument("--source", default="world_mixed")
    f = sub.add_parser("fusion", help="DeAR's fusion weights per data set (Figure 2)")
    f.add_argument("dir")
    f.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if args.what == "b2n":
        print(b2n_table(args.dir))
    elif args.what == "roles":
        print(roles_table(args.plain, args.routed))
    elif args.what == "xd":
        print(xd_table(args.dir, args.source))
    else:
        import os

        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        print(fusion_report(args.dir, args.out))


if __name__ == "__main__":
    main()
