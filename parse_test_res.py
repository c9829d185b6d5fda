"""Summarise results from ``log.txt`` files.

    python parse_test_res.py output/base2new/train_base/dtd/shots_16/DeAR/dear     # mean +- std over seed*/
    python parse_test_res.py output/base2new --table [--csv results.csv]             # Base / Novel / HM table

The accuracy of a run is the test accuracy its ``log.txt`` reports (for a training run, the one after
``Finish training``): the rule of CoOp's ``parse_test_res.py``, shared with the protocol scripts' skip check
through ``runs.run_result``. ``log.txt-<timestamp>`` files (reruns into a finished folder) do not count.

The "+-" is the population standard deviation over seeds (``np.std``, as CoOp prints it, so numbers compare
with published tables); ``--sample-std`` gives the sample standard deviation (n - 1) instead.
"""
from __future__ import annotations

import argparse
import csv
import glob
import os.path as osp
import statistics
import sys
from collections import defaultdict

from runs import other_results, run_result


def run_accuracy(run_dir: str) -> float | None:
    """Test accuracy of one run (``None`` if it has not finished); see the module docstring."""
    return run_result(run_dir)


def seed_accuracies(directory: str) -> dict[str, float]:
    out = {}
    for run in sorted(glob.glob(osp.join(directory, "seed*"))):
        acc = run_accuracy(run)
        if acc is not None:
            out[osp.basename(run)] = acc
        elif other_results(run):
            print(f"note: {run}/log.txt reports no test result, {', '.join(other_results(run))} do; they do not "
                  "count (CoOp's parse_test_res.py also reads log.txt only). Rerun the run to finish it.",
                  file=sys.stderr)
    return out


def mean_std(values: list[float], sample: bool = False) -> tuple[float, float]:
    """Mean and standard deviation: population (CoOp's ``np.std``) or, with ``sample``, sample (n - 1)."""
    if len(values) < 2:
        return statistics.mean(values), 0.0
    return statistics.mean(values), (statistics.stdev(values) if sample else statistics.pstdev(values))


def harmonic_mean(base: float, new: float) -> float:
    return 2 * base * new / (base + new) if base + new > 0 else 0.0


def collect_seeds(root: str) -> dict[tuple[str, str], dict[str, dict[str, dict[str, float]]]]:
    """``{(trainer, config): {dataset: {"base": {seed: acc}, "novel": {seed: acc}}}}`` of a base2new root."""
    table: dict = defaultdict(dict)
    for split, key in (("train_base", "base"), ("test_new", "novel")):
        pattern = osp.join(root, split, "*", "shots_*", "*", "*")
        for d in sorted(glob.glob(pattern)):
            dataset, _, trainer, config = d.split(osp.sep)[-4:]
            accs = seed_accuracies(d)
            if accs:
                table[(trainer, config)].setdefault(dataset, {})[key] = accs
    return table


def collect_base2new(root: str) -> dict[tuple[str, str], dict[str, dict[str, float]]]:
    """``{(trainer, config): {dataset: {"base": acc, "novel": acc}}}`` averaged over seeds."""
    return {method: {ds: {key: mean_std(list(accs.values()))[0] for key, accs in v.items()} for ds, v in by.items()}
            for method, by in collect_seeds(root).items()}


def render_table(table) -> tuple[str, list[list]]:
    rows = [["Method", "Dataset", "Base", "Novel", "HM"]]
    lines = ["| Method | Dataset | Base | Novel | HM |", "|---|---|---|---|---|"]
    for (trainer, config), per_ds in sorted(table.items()):
        complete = {ds: v for ds, v in per_ds.items() if "base" in v and "novel" in v}
        entries = [(ds, v["base"], v["novel"], harmonic_mean(v["base"], v["novel"]))
                   for ds, v in sorted(complete.items())]
        if len(entries) > 1:
            b = statistics.mean(e[1] for e in entries)
            n = statistics.mean(e[2] for e in entries)
            entries.append(("Average", b, n, harmonic_mean(b, n)))
        for ds, b, n, h in entries:
            name = f"{trainer} ({config})"
            rows.append([name, ds, f"{b:.2f}", f"{n:.2f}", f"{h:.2f}"])
            lines.append(f"| {name} | {ds} | {b:.2f} | {n:.2f} | {h:.2f} |")
    return "\n".join(lines), rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", help="a folder of seed*/ runs, or with --table a base2new output root")
    parser.add_argument("--table", action="store_true", help="paper-style Base / Novel / HM table")
    parser.add_argument("--csv", default="", help="with --table: also write the table to this CSV file")
    parser.add_argument("--sample-std", action="store_true",
                        help="sample standard deviation (n - 1) instead of CoOp's population one (np.std)")
    args = parser.parse_args(argv)
    if not osp.isdir(args.directory):
        print(f"error: {args.directory} is not a directory", file=sys.stderr)
        return 2
    if args.table:
        table = collect_base2new(args.directory)
        if not table:
            print(f"error: no finished runs under {args.directory}/{{train_base,test_new}}", file=sys.stderr)
            return 1
        markdown, rows = render_table(table)
        print(markdown)
        if args.csv:
            with open(args.csv, "w", newline="") as f:
                csv.writer(f).writerows(rows)
            print(f"Wrote {args.csv}")
        return 0
    accs = seed_accuracies(args.directory)
    if not accs:
        print(f"error: no seed*/log.txt with an accuracy under {args.directory}", file=sys.stderr)
        return 1
    for seed, acc in accs.items():
        print(f"{seed}: accuracy {acc:.2f}%")
    m, s = mean_std(list(accs.values()), sample=args.sample_std)
    kind = "sample std" if args.sample_std else "std"
    print(f"=> result: accuracy {m:.2f}% +- {s:.2f}% ({len(accs)} seeds, {kind})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
