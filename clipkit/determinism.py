"""Bit-for-bit reproducible CPU numerics: one call, first thing in a program, before any tensor is computed.

    from clipkit.determinism import pin_numerics
    pin_numerics()                   # in main(), before the first tensor operation

    DEAR_NUMERICS=pinned python train.py ...   # train.py and head_roles.discover pin on request

    python -m clipkit.determinism      # print what gets pinned on this machine and check that it took

Why. A float32 training run is a long chain of roundings, and a single differently rounded sum grows into
different weights within a few steps. PyTorch on a CPU picks its kernels, and so its rounding, by the machine:

- **thread count**: ATen splits some reductions by thread and adds the partial sums (LayerNorm's weight
  gradients, full reductions), MKL blocks its matrix products by thread; ``torch`` starts with one thread per
  core, so a 2-core and a 4-core machine train different models;
- **ATen's vectorised kernels** (``ATEN_CPU_CAPABILITY``: default / avx2 / avx512): other vector widths sum in
  another order, other ``exp``/``log`` implementations round otherwise;
- **MKL's matrix products** (``MKL_CBWR``): MKL runs other code on AVX2, AVX-512 and on AMD processors, each
  with its own order of additions; only its ``COMPATIBLE`` branch is the same on Intel and AMD processors;
- **oneDNN** (the convolution of the patch embedding): just-in-time kernels chosen by instruction set and cache
  sizes (``ONEDNN_MAX_CPU_ISA``).

Each of these alone changes the weights of a short pretraining run (``tests/test_world.py``). Pinned: a fixed
thread count (``DEAR_THREADS``, default 1: the same on every machine, however many cores), ATen at AVX2 (every
x86-64 processor since 2013 has it), MKL's ``COMPATIBLE`` branch without dynamic thread adjustment
(``DEAR_MKL_CBWR`` to choose another), oneDNN and NNPACK off for float32 (convolutions run as ATen's
im2col + MKL product), deterministic algorithms (and cuDNN / cuBLAS settings for GPUs, which only make a GPU
repeat itself: GPUs of other models round differently). The environment variables are also set for child
processes, with ``PYTHONHASHSEED=0`` (nothing in this repo iterates an unsorted set of strings, so it is a
guard, not a fix). ``tools.pretrain_world_clip`` always pins; ``train.py`` and ``head_roles.discover`` pin when
``DEAR_NUMERICS=pinned`` (``scripts/demo.sh`` and ``scripts/world_benchmark.sh`` set it), and otherwise use
PyTorch's defaults (faster on many-core machines; then the digits are this machine's). ``DEAR_NUMERICS=native``
skips every pin. The pins take effect only before the libraries have run their first kernel, so a
late call raises instead of silently doing nothing.
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import os.path as osp
import warnings

logger = logging.getLogger(__name__)

DEFAULT_THREADS = 1
ATEN_ISA = "avx2"
DEFAULT_MKL_BRANCH = "COMPATIBLE"
# mkl_service.h: the code-path branches MKL's conditional numerical reproducibility (CNR) knows
_MKL_BRANCHES = {"OFF": 1, "AUTO": 2, "COMPATIBLE": 3, "SSE2": 4, "SSSE3": 6, "SSE4_1": 7, "SSE4_2": 8, "AVX": 9,
                 "AVX2": 10, "AVX512_MIC": 11, "AVX512": 12, "AVX512_MIC_E1": 13, "AVX512_E1": 14}
_MKL_CBWR_BRANCH_QUERY = 1
_MKL_CBWR_ERRORS = {-1: "invalid settings", -2: "invalid input", -3: "branch not supported on this processor",
                    -4: "unknown branch", -8: "MKL has already computed (mode change failure)"}


class NumericsPinError(RuntimeError):
    """The numerics could not be pinned (usually: called after the first tensor operation)."""


def _mkl():
    """MKL's service functions as exported by ``libtorch_cpu`` (PyTorch links MKL statically), or None."""
    import torch

    lib_dir = osp.join(osp.dirname(torch.__file__), "lib")
    for name in ("libtorch_cpu.so", "libtorch_cpu.dylib", "torch_cpu.dll"):
        path = osp.join(lib_dir, name)
        if osp.exists(path):
            try:
                lib = ctypes.CDLL(path)
                for fn in ("mkl_serv_cbwr_set", "mkl_serv_cbwr_get", "mkl_serv_set_dynamic"):
                    getattr(lib, fn).restype = ctypes.c_int
                    getattr(lib, fn).argtypes = [ctypes.c_int]
                return lib
            except (OSError, AttributeError):
                return None
    return None


def _branch_name(code: int) -> str:
    if code == _MKL_BRANCHES["OFF"]:
        return "OFF (MKL's own choice for this processor)"
    return {v: k for k, v in _MKL_BRANCHES.items()}.get(code, str(code))


def numerics_settings(threads: int | None = None, mkl_branch: str | None = None) -> dict[str, str]:
    """The environment that :func:`pin_numerics` sets (also for child processes)."""
    threads = int(threads or os.environ.get("DEAR_THREADS") or DEFAULT_THREADS)
    mkl_branch = (mkl_branch or os.environ.get("DEAR_MKL_CBWR") or DEFAULT_MKL_BRANCH).upper()
    if mkl_branch not in _MKL_BRANCHES:
        raise NumericsPinError(f"MKL branch {mkl_branch!r}; choose one of {sorted(_MKL_BRANCHES)}")
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "MKL_DYNAMIC": "FALSE",
            "MKL_CBWR": mkl_branch, "ATEN_CPU_CAPABILITY": ATEN_ISA, "ONEDNN_MAX_CPU_ISA": ATEN_ISA.upper(),
            "OPENBLAS_NUM_THREADS": str(threads), "OPENBLAS_CORETYPE": "Haswell",  # numpy's BLAS, AVX2 kernels
            "PYTHONHASHSEED": "0", "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}


def pin_numerics(threads: int | None = None, mkl_branch: str | None = None) -> dict[str, str]:
    """Pin every machine-dependent choice of CPU kernels so that a run gives the same bits on any x86-64 machine.

    Call it once, first thing in ``main()``, before any tensor is computed (importing torch is fine).
    ``threads`` (default ``$DEAR_THREADS`` or 1) and ``mkl_branch`` (default ``$DEAR_MKL_CBWR`` or
    ``COMPATIBLE``) are part of the result: runs compare bit for bit only under the same values.
    Returns a description of what is in effect (for logs and cache keys). ``DEAR_NUMERICS=native``
    returns ``{"numerics": "native"}`` and pins nothing. Raises :class:`NumericsPinError` when called too late.
    """
    import torch

    if os.environ.get("DEAR_NUMERICS", "pinned") == "native":
        return {"numerics": "native", "torch": torch.__version__}
    env = numerics_settings(threads, mkl_branch)
    os.environ.update(env)  # read by ATen, MKL and oneDNN at their first use, and inherited by children
    n = int(env["OMP_NUM_THREADS"])

    # ATen: the capability is fixed at the first dispatched kernel
    isa = torch.backends.cpu.get_cpu_capability().lower()
    if isa != ATEN_ISA:
        if hasattr(torch.cpu, "_is_avx2_supported") and not torch.cpu._is_avx2_supported():
            warnings.warn(f"this processor has no AVX2: ATen runs {isa!r} kernels, so the digits differ from "
                          "those of AVX2 machines (the README's)", stacklevel=2)
        else:
            raise NumericsPinError(f"ATen already runs {isa!r} kernels: call pin_numerics() before the first "
                                   f"tensor operation, or start the program with ATEN_CPU_CAPABILITY={ATEN_ISA}")

    # MKL: branch and dynamic threading are fixed at its first call
    branch = "n/a (no MKL)"
    lib = _mkl() if torch.backends.mkl.is_available() else None
    if lib is not None:
        want = _MKL_BRANCHES[env["MKL_CBWR"]]
        status = lib.mkl_serv_cbwr_set(want)
        got = lib.mkl_serv_cbwr_get(_MKL_CBWR_BRANCH_QUERY)
        if got != want:
            raise NumericsPinError(
                f"MKL runs the {_branch_name(got)} branch, not {env['MKL_CBWR']} "
                f"({_MKL_CBWR_ERRORS.get(status, status)}): call pin_numerics() before the first tensor "
                f"operation, or choose a branch this processor supports with DEAR_MKL_CBWR (COMPATIBLE runs anywhere)")
        lib.mkl_serv_set_dynamic(0)
        branch = _branch_name(got)

    torch.set_num_threads(n)
    try:  # numpy's (and scipy's) BLAS; its kernel choice is read from OPENBLAS_CORETYPE only at numpy's import
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=n, user_api="blas")
    except ImportError:
        pass
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already set, or inter-op work has started; eager runs use no inter-op parallelism
    torch.backends.mkldnn.enabled = False  # float32 convolutions: ATen's im2col + MKL (pinned above)
    torch.backends.nnpack.set_flags(False)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    info = {"numerics": "pinned", "torch": torch.__version__, "threads": str(torch.get_num_threads()),
            "aten": torch.backends.cpu.get_cpu_capability().lower(), "mkl_branch": branch,
            "onednn": "off", "python_hash_seed": os.environ.get("PYTHONHASHSEED", "")}
    logger.info("Pinned numerics: %s", info)
    return info


def pin_if_requested() -> dict[str, str] | None:
    """:func:`pin_numerics` when ``DEAR_NUMERICS=pinned``, else nothing (for programs that pin on request)."""
    if os.environ.get("DEAR_NUMERICS") == "pinned":
        return pin_numerics()
    return None


def state_digest(state_dict: dict) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of every tensor, in name order: equal iff bit-identical."""
    import torch

    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def main() -> None:
    info = pin_numerics()
    import torch

    x = torch.randn(64, 64, generator=torch.Generator().manual_seed(0))
    info["check"] = hashlib.sha256((x @ x).softmax(-1).numpy().tobytes()).hexdigest()[:16]
    for k, v in info.items():
        print(f"{k:18s} {v}")


if __name__ == "__main__":
    main()
