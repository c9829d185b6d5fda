"""tools/determinism.py: what gets pinned, a late call refused, digests that see every bit."""
import os
import subprocess
import sys

import torch
from conftest import ROOT

from clipkit.determinism import numerics_settings, state_digest

ENV = dict(os.environ, CLIP_OFFLINE="1", PYTHONWARNINGS="ignore")


def _python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=dict(ENV, **env), capture_output=True,
                          text=True, timeout=300)


def test_pins_threads_kernels_and_children_env():
    out = _python("from clipkit.determinism import pin_numerics; import os, torch; info = pin_numerics(); "
                  "print(info['threads'], info['aten'], info['mkl_branch'], torch.backends.mkldnn.enabled, "
                  "os.environ['PYTHONHASHSEED'], os.environ['OMP_NUM_THREADS'])",
                  OMP_NUM_THREADS="2", ATEN_CPU_CAPABILITY="default", MKL_CBWR="AUTO")
    assert out.returncode == 0, out.stderr
    threads, aten, branch, onednn, hash_seed, omp = out.stdout.split()
    assert (threads, aten, onednn, hash_seed, omp) == ("1", "avx2", "False", "0", "1")
    assert branch in ("COMPATIBLE", "n/a")  # n/a: a torch build without MKL
    env = numerics_settings(threads=3, mkl_branch="auto")
    assert env["MKL_NUM_THREADS"] == "3" and env["MKL_CBWR"] == "AUTO"


def test_late_call_is_refused_and_native_pins_nothing():
    late = _python("import torch; torch.randn(64, 64) @ torch.randn(64, 64)\n"
                   "from clipkit.determinism import pin_numerics; pin_numerics()")
    if torch.backends.mkl.is_available():
        assert late.returncode != 0 and "before the first tensor operation" in late.stderr
    native = _python("from clipkit.determinism import pin_numerics; print(pin_numerics()['numerics'])",
                     DEAR_NUMERICS="native")
    assert native.returncode == 0 and native.stdout.strip() == "native"


def test_state_digest_sees_one_bit():
    sd = {"a": torch.ones(3), "b": torch.arange(4)}
    flipped = {"a": torch.ones(3), "b": torch.arange(4)}
    flipped["a"][1] = torch.nextafter(torch.tensor(1.0), torch.tensor(2.0))
    assert state_digest(sd) == state_digest({"b": torch.arange(4), "a": torch.ones(3)})
    assert state_digest(sd) != state_digest(flipped)
    assert state_digest(sd) != state_digest({"a": torch.ones(3, dtype=torch.float64), "b": torch.arange(4)})
