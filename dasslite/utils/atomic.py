"""Crash-safe file writes: write to a temporary name in the same folder, flush to disk, rename.

A process killed at any instant (``kill -9``, power loss after the rename is durable) leaves either the
previous file or the new one, never a truncated one. Temporary names end in ``.tmp-<pid>``, so two
processes never write into the same temporary file and readers never mistake one for a result.
"""
from __future__ import annotations

import contextlib
import glob
import os
import os.path as osp
import shutil
from collections.abc import Callable, Iterator
from typing import IO, Any

TMP_SUFFIX = ".tmp-"


def _fsync_dir(dirname: str) -> None:
    """Make a rename in ``dirname`` durable (best effort: not every platform can open a folder)."""
    try:
        fd = os.open(dirname, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "w", encoding: str | None = None) -> Iterator[IO[Any]]:
    """``with atomic_open(path, "wb") as f: ...``: ``path`` appears complete when the block ends, or not at all.

    If the block raises, the temporary file is removed and ``path`` is untouched.
    """
    if not any(m in mode for m in "wx"):
        raise ValueError(f"atomic_open writes whole files; mode {mode!r} must contain 'w'")
    dirname = osp.dirname(osp.abspath(path))
    os.makedirs(dirname, exist_ok=True)
    tmp = f"{path}{TMP_SUFFIX}{os.getpid()}"
    if "b" not in mode and encoding is None:
        encoding = "utf-8"
    try:
        with open(tmp, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    _fsync_dir(dirname)


def atomic_write_text(path: str, text: str) -> None:
    """Replace ``path`` with ``text`` atomically."""
    with atomic_open(path, "w") as f:
        f.write(text)


def atomic_save(save: Callable[[IO[bytes]], None], path: str) -> None:
    """Call ``save(file)`` on a temporary binary file, then rename it to ``path`` (e.g. for ``torch.save``)."""
    with atomic_open(path, "wb") as f:
        save(f)


def atomic_copy(src: str, dst: str) -> None:
    """Copy ``src`` to ``dst`` so that ``dst`` is never seen half-written."""
    with open(src, "rb") as fin, atomic_open(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout)


def remove_stale_temporaries(dirname: str) -> list[str]:
    """Delete ``*.tmp-<pid>`` files of processes that are no longer running; return what was removed."""
    removed = []
    for tmp in glob.glob(osp.join(glob.escape(dirname), f"*{TMP_SUFFIX}*")):
        pid = tmp.rsplit(TMP_SUFFIX, 1)[1]
        if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            os.remove(tmp)
            removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True
