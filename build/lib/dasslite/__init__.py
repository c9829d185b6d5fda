"""dasslite: a clean-room implementation of the subset of the Dassl.pytorch API that the CoOp family uses.

Trainers and datasets in this project import ``dassl.*`` exactly as CoOp, MaPLe and PromptSRC do. Call
:func:`use_dassl` before those imports: when the real Dassl.pytorch is installed it is left untouched and
used; when it is not, the module paths ``dassl``, ``dassl.engine``, ... are served by this package.

``DEAR_ENGINE`` selects explicitly: ``auto`` (default), ``dassl`` (require the real one) or ``builtin``.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys

__version__ = "0.6.3+lite"

_ALIAS = "dassl"


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec):  # noqa: D102
        return importlib.import_module(self.target)

    def exec_module(self, module) -> None:  # noqa: D102
        # The target module is already executed; alias it under the requested name.
        pass


class _AliasFinder(importlib.abc.MetaPathFinder):
    """Serve ``dassl`` and ``dassl.<sub>`` from ``dasslite`` and ``dasslite.<sub>``."""

    def find_spec(self, fullname, path=None, target=None):  # noqa: D102
        if fullname != _ALIAS and not fullname.startswith(_ALIAS + "."):
            return None
        real = __name__ + fullname[len(_ALIAS):]
        if importlib.util.find_spec(real) is None:
            return None
        spec = importlib.machinery.ModuleSpec(fullname, _AliasLoader(real))
        return spec


_ENGINE: str | None = None


def _real_dassl_available() -> bool:
    if any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        return False
    try:
        spec = importlib.util.find_spec(_ALIAS)
    except (ImportError, ValueError):
        return False
    return spec is not None


def use_dassl() -> str:
    """Make ``import dassl`` work; return ``"dassl"`` (real Dassl.pytorch) or ``"builtin"`` (dasslite).

    Idempotent. Never shadows a real installation unless ``DEAR_ENGINE=builtin`` asks for it.
    """
    global _ENGINE
    if _ENGINE is not None:
        return _ENGINE
    choice = os.environ.get("DEAR_ENGINE", "auto").lower()
    if choice not in ("auto", "dassl", "builtin"):
        raise ValueError(f"DEAR_ENGINE={choice!r} is not one of: auto, dassl, builtin")
    if choice != "builtin" and _real_dassl_available():
        _ENGINE = "dassl"
        return _ENGINE
    if choice == "dassl":
        raise ImportError(
            "DEAR_ENGINE=dassl but Dassl.pytorch is not importable. Install it with "
            "`git clone https://github.com/KaiyangZhou/Dassl.pytorch && cd Dassl.pytorch && "
            "pip install -r requirements.txt && python setup.py develop`, or unset DEAR_ENGINE."
        )
    for name in [m for m in sys.modules if m == _ALIAS or m.startswith(_ALIAS + ".")]:
        del sys.modules[name]
    sys.meta_path.insert(0, _AliasFinder())
    _ENGINE = "builtin"
    return _ENGINE


def engine_name() -> str:
    """Which engine serves ``dassl``: ``"dassl"``, ``"builtin"``, or ``"unset"`` before :func:`use_dassl`."""
    return _ENGINE or "unset"
