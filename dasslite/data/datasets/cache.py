"""Few-shot and listing caches (``split_fewshot/*.pkl``, ImageNet's ``preprocessed.pkl``): safe to read, shared
with CoOp both ways.

Reading never runs code from the file: a restricted unpickler admits only what such a cache holds (``Datum``
objects under Dassl's or this package's class path, lists, dicts, tuples, sets) and refuses anything else,
naming the file. Writing is atomic and names Dassl's class path ``dassl.data.datasets.base_dataset.Datum``
whichever engine runs, so CoOp and Dassl read the caches this project writes and the other way round.
"""
from __future__ import annotations

import io
import pickle
from typing import Any

from ...utils.atomic import atomic_open
from .base_dataset import Datum as _BuiltinDatum

DASSL_DATUM_MODULE = "dassl.data.datasets.base_dataset"
_DATUM_PATHS = {(DASSL_DATUM_MODULE, "Datum"), (_BuiltinDatum.__module__, "Datum")}
_SAFE_GLOBALS = {
    ("builtins", "list"), ("builtins", "dict"), ("builtins", "tuple"), ("builtins", "set"),
    ("builtins", "frozenset"), ("builtins", "object"), ("collections", "OrderedDict"),
    ("copyreg", "_reconstructor"),  # protocol 0/1 pickles rebuild plain objects through it
}
PICKLE_PROTOCOL = 4  # readable by every Python CoOp runs on (3.4+)


class CacheError(ValueError):
    """A cache file is refused (it names code) or unreadable (truncated, not a cache)."""


def _datum_class() -> type:
    """The ``Datum`` the running engine uses: the real Dassl's when it is in charge, else ours."""
    try:
        from dassl.data.datasets import Datum

        return Datum
    except ImportError:
        return _BuiltinDatum


class _CacheUnpickler(pickle.Unpickler):
    def __init__(self, file, path: str) -> None:
        super().__init__(file)
        self.path = path
        self.datum = _datum_class()

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102
        if (module, name) in _DATUM_PATHS:
            return self.datum
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise CacheError(
            f"{self.path}: refused to load: the file names {module}.{name}, which a data cache never holds "
            "(only Datum objects, lists and dicts), so unpickling it could run code. Nothing from it was run. "
            "Delete the file; the project rebuilds it."
        )


def load_cache(path: str, what: str = "cache", rebuild: str = "it is rebuilt on the next run") -> Any:
    """Unpickle a data cache written by this project, CoOp or Dassl, refusing anything but data.

    ``what`` names the file in messages (e.g. ``"few-shot cache"``); ``rebuild`` says what deleting it does.
    """
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return _CacheUnpickler(io.BytesIO(raw), path).load()
    except CacheError:
        raise
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, ImportError) as e:
        raise CacheError(
            f"{path}: the {what} is truncated or corrupt ({type(e).__name__}: {e}). Delete it; {rebuild}."
        ) from None


class _DasslPathPickler(pickle._Pickler):  # the pure-Python pickler: its save_global can be redirected
    """Pickles this package's ``Datum`` under Dassl's class path, so CoOp/Dassl checkouts can read it."""

    def save_global(self, obj, name=None):  # noqa: D102
        if obj is _BuiltinDatum:
            self.save(DASSL_DATUM_MODULE)
            self.save("Datum")
            self.write(pickle.STACK_GLOBAL)
            self.memoize(obj)
            return
        super().save_global(obj, name)


def save_cache(obj: Any, path: str) -> None:
    """Pickle ``obj`` to ``path`` atomically, with ``Datum`` under ``dassl.data.datasets.base_dataset``."""
    with atomic_open(path, "wb") as f:
        _DasslPathPickler(f, protocol=PICKLE_PROTOCOL).dump(obj)


def check_datum_list(items: Any, path: str, key: str) -> list:
    """``items`` must be a list of ``Datum``-like objects (an ``impath`` string and an integer ``label``)."""
    if not isinstance(items, list):
        raise CacheError(f"{path}: {key!r} is a {type(items).__name__}, not a list of Datum; delete the file")
    for i, item in enumerate(items):
        impath = getattr(item, "impath", None)
        if not isinstance(impath, str) or not isinstance(getattr(item, "label", None), int):
            raise CacheError(f"{path}: {key}[{i}] is not a Datum (got {type(item).__name__}); delete the file")
    return items

