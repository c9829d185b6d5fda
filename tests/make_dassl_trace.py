"""Record what the REAL Dassl.pytorch trains on for a fixed seed: tests/data/dassl_trace.json.

Run it in an environment where Dassl.pytorch 0.6.3 is installed (not in CI; see README "Checking the real
Dassl.pytorch")::

    DEAR_ENGINE=dassl python tests/make_dassl_trace.py

It trains the test trainer ``TinyProbe`` (tests/engine_helpers.py) through ``train.py`` for 3 epochs on the
parity data (a fake DTD tree, 8 shots, seed 1, random resized crop + flip, best_val), once without and once
with 2 data-loader workers, and stores per batch the sample indices and per-image statistics of the augmented
tensors, the final weights and the test accuracy. tests/test_dassl_parity.py runs the same on the built-in
engine and compares.
"""
from __future__ import annotations

import json
import os
import os.path as osp
import platform
import subprocess
import sys
import tempfile

TESTS = osp.dirname(osp.abspath(__file__))
ROOT = osp.dirname(TESTS)
sys.path[:0] = [ROOT, TESTS]
TRACE_FILE = osp.join(TESTS, "data", "dassl_trace.json")
WORKERS = (0, 2)


def run_traced(data: str, out: str, workers: int, python: str = sys.executable) -> dict:
    """One TinyProbe run through tests/run_train.py; returns its trace."""
    from engine_helpers import tiny_args

    trace = out + ".json"
    env = dict(os.environ, TINY_TRACE=trace, CLIP_OFFLINE="1", PYTHONHASHSEED="0")
    proc = subprocess.run([python, osp.join(TESTS, "run_train.py"), *tiny_args(data, out, workers=workers)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"run failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    with open(out + "/log.txt", encoding="utf-8") as f:
        engine = next(line.split(": ", 1)[1].strip() for line in f if line.startswith("Engine: "))
    with open(trace) as f:
        return dict(json.load(f), engine=engine)


def main() -> int:
    import dasslite

    if dasslite.use_dassl() != "dassl":
        print("error: the real Dassl.pytorch is not importable here (set DEAR_ENGINE=dassl in its environment)",
              file=sys.stderr)
        return 2
    import dassl
    import PIL
    import torch
    import torchvision
    from engine_helpers import make_parity_data

    with tempfile.TemporaryDirectory() as tmp:
        make_parity_data(osp.join(tmp, "data"))
        runs = {str(w): run_traced(osp.join(tmp, "data"), osp.join(tmp, f"out{w}"), w) for w in WORKERS}
    commit = subprocess.run(["git", "-C", osp.dirname(osp.dirname(dassl.__file__)), "rev-parse", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    doc = {
        "made_with": {"dassl": dassl.__version__, "dassl_commit": commit, "torch": torch.__version__,
                      "torchvision": torchvision.__version__, "pillow": PIL.__version__,
                      "python": platform.python_version(),
                      "command": "DEAR_ENGINE=dassl python tests/make_dassl_trace.py"},
        "runs": runs,
    }
    os.makedirs(osp.dirname(TRACE_FILE), exist_ok=True)
    with open(TRACE_FILE, "w") as f:
        json.dump(doc, f)
        f.write("\n")
    sizes = ", ".join(f"{k} workers: {len(v['batches'])} batches" for k, v in runs.items())
    print(f"Wrote {TRACE_FILE} ({sizes})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
