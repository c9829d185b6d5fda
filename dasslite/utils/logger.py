"""Tee stdout/stderr into ``<output>/log.txt`` as Dassl does, so every ``print`` and log line lands there."""
from __future__ import annotations

import os
import os.path as osp
import sys
import time

from .tools import mkdir_if_missing


class _Tee:
    def __init__(self, stream, fpath: str) -> None:
        self.stream = stream
        self.file = open(fpath, "a", encoding="utf-8")

    def write(self, msg: str) -> None:
        self.stream.write(msg)
        if not self.file.closed:
            self.file.write(msg)

    def flush(self) -> None:
        self.stream.flush()
        if not self.file.closed:
            self.file.flush()
            os.fsync(self.file.fileno())

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name):
        return getattr(self.stream, name)


def setup_logger(output: str | None = None) -> None:
    """Write everything printed from now on to ``output`` (a ``.txt`` file or a folder for ``log.txt``).

    An existing ``log.txt`` is kept and a timestamped file is used instead, as Dassl does.
    """
    if output is None:
        return
    if output.endswith(".txt") or output.endswith(".log"):
        fpath = output
    else:
        fpath = osp.join(output, "log.txt")
    if osp.exists(fpath):
        fpath += time.strftime("-%Y-%m-%d-%H-%M-%S")
    tee_to(fpath)


def tee_to(fpath: str) -> str:
    """Append everything printed from now on (stdout and stderr) to exactly ``fpath``; return it."""
    mkdir_if_missing(osp.dirname(osp.abspath(fpath)))
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        base = stream.stream if isinstance(stream, _Tee) else stream
        setattr(sys, name, _Tee(base, fpath))
    return fpath


def teardown_logger() -> None:
    """Stop teeing: restore the original streams and close the log file (so it can be moved or removed)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if isinstance(stream, _Tee):
            stream.flush()
            stream.file.close()
            setattr(sys, name, stream.stream)
