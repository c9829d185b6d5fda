"""Run folders: what a run leaves in ``--output-dir``, and the one definition of "finished" every tool uses.

A run folder holds ``config.yaml`` (the full merged config, written atomically when the run starts),
``log.txt``, one folder per registered model with ``model.pth.tar-<epoch>`` / ``model-last.pth.tar`` /
``model-best.pth.tar`` / ``checkpoint``, ``tensorboard/``, and ``.lock`` while a process works in it.

Used by ``train.py`` (lock, config, log file), ``parse_test_res.py`` and the protocol scripts (finished or
not, through ``python runs.py finished DIR``), and by anything that loads a trained run
(:func:`check_run`, :func:`load_run_config`)::

    info = check_run("output/run", epoch=10)      # folder, config.yaml and checkpoints; no torch needed
    cfg = load_run_config("output/run", defaults)  # the run's config merged onto this code's defaults

**Which log counts.** The result of a run is the test accuracy in ``log.txt`` (for a training run, the one
after ``Finish training``), as in CoOp's ``parse_test_res.py``. A rerun into an unfinished folder (a resume, or
a retry after an error) appends to ``log.txt``; a rerun into a finished one writes ``log.txt-<timestamp>``
as Dassl does and does not change what counts.

This module imports only the standard library at the top, so the shell scripts' checks stay fast.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import os.path as osp
import re
import socket
import sys
import time
from dataclasses import dataclass, field

CONFIG_FILE = "config.yaml"
LOG_FILE = "log.txt"
LOCK_FILE = ".lock"
_EPOCH_FILE = re.compile(r"^model\.pth\.tar-(\d+)$")
_ACCURACY = re.compile(r"^\* accuracy: ([\d.]+)%")
_TRAIN_LINE = re.compile(r"^epoch \[\d+/\d+\]")


class RunFolderError(FileNotFoundError):
    """A run folder is missing, or lacks what the caller needs; the message says what to do."""


class RunLocked(RuntimeError):
    """Another live process works in this run folder."""


# ---- finished or not ---------------------------------------------------------------------------------------

def log_result(text: str) -> float | None:
    """The test accuracy a log reports, or ``None`` if it reports none (unfinished, failed, or val only).

    Training runs count only after their ``Finish training`` line; evaluation-only logs (no ``epoch [``
    lines) count their ``*test*`` evaluation. Validation results (``Evaluate on the *val* set``) never count.
    """
    lines = text.splitlines()
    finish = max((i for i, line in enumerate(lines) if line.strip() == "Finish training"), default=None)
    if finish is not None:
        lines = lines[finish:]
    elif any(_TRAIN_LINE.match(line) for line in lines):
        return None  # training started and did not finish
    accuracy, in_test = None, True
    for line in lines:
        if line.startswith("Evaluate on the *"):
            in_test = line.startswith("Evaluate on the *test*")
        found = _ACCURACY.match(line)
        if found and in_test:
            accuracy = float(found.group(1))
    return accuracy


def run_result(run_dir: str) -> float | None:
    """Test accuracy of the run in ``run_dir`` (from its ``log.txt``), or ``None`` if it has not finished."""
    try:
        with open(osp.join(run_dir, LOG_FILE), encoding="utf-8", errors="replace") as f:
            return log_result(f.read())
    except OSError:
        return None


def is_finished(run_dir: str) -> bool:
    return run_result(run_dir) is not None


def other_results(run_dir: str) -> dict[str, float]:
    """Results in ``log.txt-<timestamp>`` files (reruns into the folder), which do not count; for notes."""
    out = {}
    if not osp.isdir(run_dir):
        return out
    for name in sorted(os.listdir(run_dir)):
        if name.startswith(LOG_FILE + "-"):
            with open(osp.join(run_dir, name), encoding="utf-8", errors="replace") as f:
                acc = log_result(f.read())
            if acc is not None:
                out[name] = acc
    return out


def log_file_for(run_dir: str) -> str:
    """Where this invocation logs: ``log.txt`` unless the folder holds a finished run's ``log.txt``, in which
    case ``log.txt-<timestamp>`` (Dassl's name for a rerun)."""
    path = osp.join(run_dir, LOG_FILE)
    if osp.exists(path) and is_finished(run_dir):
        return path + time.strftime("-%Y-%m-%d-%H-%M-%S")
    return path


# ---- what a run folder holds -------------------------------------------------------------------------------

@dataclass
class RunInfo:
    """What :func:`inspect_run` found in a run folder (no file is unpickled)."""

    path: str
    config: str | None
    epochs: dict[str, list[int]] = field(default_factory=dict)  # model folder -> saved epochs, ascending
    best: list[str] = field(default_factory=list)  # model folders with model-best.pth.tar
    last: list[str] = field(default_factory=list)  # model folders with model-last.pth.tar
    finished: bool = False

    def common_epochs(self) -> list[int]:
        """Epochs saved for every model folder."""
        sets = [set(v) for v in self.epochs.values()]
        return sorted(set.intersection(*sets)) if sets else []


def inspect_run(run_dir: str) -> RunInfo:
    """List a run folder's config, checkpoints per model folder and whether it finished."""
    if not osp.isdir(run_dir):
        raise RunFolderError(f"run folder {run_dir} does not exist")
    config = osp.join(run_dir, CONFIG_FILE)
    info = RunInfo(path=run_dir, config=config if osp.isfile(config) else None, finished=is_finished(run_dir))
    for name in sorted(os.listdir(run_dir)):
        sub = osp.join(run_dir, name)
        if not osp.isdir(sub) or name == "tensorboard":
            continue
        files = os.listdir(sub)
        epochs = sorted(int(m.group(1)) for m in map(_EPOCH_FILE.match, files) if m)
        if epochs or "model-best.pth.tar" in files or "model-last.pth.tar" in files:
            info.epochs[name] = epochs
            if "model-best.pth.tar" in files:
                info.best.append(name)
            if "model-last.pth.tar" in files:
                info.last.append(name)
    return info


def check_run(run_dir: str, epoch: int | None = None, need_config: bool = False) -> RunInfo:
    """Check, before anything heavy is loaded, that ``run_dir`` is a trained run with the weights asked for.

    ``epoch``: ``model.pth.tar-<epoch>`` must exist in every model folder; ``None``: ``model-best.pth.tar``
    (what ``--load-epoch`` left out loads). ``need_config``: ``config.yaml`` must exist. Raises
    :class:`RunFolderError` saying what is there and what to pass instead.
    """
    info = inspect_run(run_dir)
    if not info.epochs:
        raise RunFolderError(
            f"{run_dir} holds no checkpoint (no <model>/model.pth.tar-<epoch>): it is not a trained run, or its "
            "training failed before the first epoch ended. Train it first (e.g. scripts/base2new_train.sh)."
        )
    saved = info.common_epochs()
    if epoch is not None and epoch not in saved:
        listed = ", ".join(map(str, saved)) or "none"
        raise RunFolderError(
            f"{run_dir} has no checkpoint for epoch {epoch} (saved epochs: {listed}); pass one of them "
            "(--load-epoch / LOADEP), or train until that epoch"
        )
    if epoch is None and len(info.best) < len(info.epochs):
        listed = ", ".join(map(str, saved)) or "none"
        raise RunFolderError(f"{run_dir} has no model-best.pth.tar (TEST.FINAL_MODEL best_val was not used); "
                             f"pass --load-epoch with one of the saved epochs: {listed}")
    if need_config and info.config is None:
        raise RunFolderError(
            f"{run_dir} has no {CONFIG_FILE} (it was trained by an older version): pass the training options "
            "again (--config-file, MODEL.BACKBONE.PATH, INPUT.SIZE, ...)"
        )
    return info


# ---- the run's config --------------------------------------------------------------------------------------

def save_run_config(cfg, run_dir: str) -> str:
    """Write ``cfg`` (a yacs node) to ``<run_dir>/config.yaml`` atomically; note keys that differ from a
    config already there (a resume with other settings). Returns the path."""
    from dasslite.utils.atomic import atomic_write_text

    path = osp.join(run_dir, CONFIG_FILE)
    text = cfg.dump()
    if osp.isfile(path):
        with open(path, encoding="utf-8") as f:
            old = f.read()
        if old != text:
            changed = _changed_keys(old, text)
            if changed:
                print(f"Note: {path} is replaced; these keys differ from the previous run in this folder: "
                      + ", ".join(changed[:12]) + (" ..." if len(changed) > 12 else ""))
    atomic_write_text(path, text)
    return path


def _changed_keys(old: str, new: str) -> list[str]:
    import yaml

    def flat(d, prefix=""):
        out = {}
        for k, v in (d or {}).items():
            if isinstance(v, dict):
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out

    try:
        a, b = flat(yaml.safe_load(old)), flat(yaml.safe_load(new))
    except yaml.YAMLError:
        return ["(previous config.yaml unreadable)"]
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def load_run_config(run_dir: str, defaults=None):
    """The config a run was trained with (``<run_dir>/config.yaml``).

    ``defaults`` (a yacs ``CfgNode`` with this code's keys, e.g. ``get_cfg_default()`` + ``extend_cfg``): the
    saved values are merged onto a clone of it, so keys added since the run keep their defaults; an unknown
    key or wrong type raises ``clipkit.config.ConfigError`` naming it. Without ``defaults``, the saved tree as it is.
    """
    from yacs.config import CfgNode

    from clipkit.config import load_yaml, merge_file

    path = osp.join(run_dir, CONFIG_FILE)
    if not osp.isdir(run_dir):
        raise RunFolderError(f"run folder {run_dir} does not exist")
    if not osp.isfile(path):
        raise RunFolderError(f"{run_dir} has no {CONFIG_FILE} (trained by an older version): pass the training "
                             "options again (--config-file, MODEL.BACKBONE.PATH, INPUT.SIZE, ...)")
    if defaults is None:
        return CfgNode(load_yaml(path, "run config") or {})
    cfg = defaults.clone()
    cfg.defrost()
    merge_file(cfg, path, "run config")
    return cfg


# ---- one process per run folder ----------------------------------------------------------------------------

class RunLock:
    """An exclusive lock on a run folder (``<run_dir>/.lock``), held for the life of the process.

    ``flock`` locks die with their process, so a run killed with ``kill -9`` never blocks the next one; the
    file records pid, host and start time for the message the second run prints.
    """

    def __init__(self, run_dir: str) -> None:
        self.run_dir = run_dir
        self.path = osp.join(run_dir, LOCK_FILE)
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        os.makedirs(self.run_dir, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # not POSIX: an exclusive file with a pid, stale when that process is gone
            return self._acquire_pidfile()
        for _ in range(10):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read(self.path)
                os.close(fd)
                raise RunLocked(self._busy(holder)) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:  # not a file another process unlinked between our open and our lock
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()} {socket.gethostname()} {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
                self._fd = fd
                return self
            os.close(fd)
        raise RunLocked(f"could not lock {self.path}")

    def _acquire_pidfile(self) -> RunLock:
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = _read(self.path)
                pid = holder.split()[0] if holder.split() else ""
                if pid.isdigit() and not _alive(int(pid)):
                    with contextlib.suppress(OSError):
                        os.remove(self.path)
                    continue
                raise RunLocked(self._busy(holder)) from None
            os.write(fd, f"{os.getpid()} {socket.gethostname()} {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
            self._fd = fd
            return self
        raise RunLocked(f"could not lock {self.path}")

    def _busy(self, holder: str) -> str:
        parts = holder.split(maxsplit=2)
        who = f"process {parts[0]} on {parts[1]}, started {parts[2].strip()}" if len(parts) == 3 else "another run"
        return (f"{self.run_dir} is in use by {who}: two runs in one output folder would overwrite each other's "
                "checkpoints and logs. Wait for it to finish, or choose another --output-dir.")

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.remove(self.path)
        os.close(self._fd)  # closing drops the flock
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---- command line (used by scripts/*.sh) -------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check run folders (used by the protocol scripts).")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("finished", help="exit 0 if RUN_DIR's log.txt reports a test accuracy (prints it)")
    p.add_argument("run_dir")
    p = sub.add_parser("check", help="exit 0 if RUN_DIR holds the checkpoints of --epoch (else say what is there)")
    p.add_argument("run_dir")
    p.add_argument("--epoch", type=int, default=None, help="epoch to load (default: model-best.pth.tar)")
    args = parser.parse_args(argv)
    if args.command == "finished":
        acc = run_result(args.run_dir)
        if acc is None:
            return 1
        print(f"{acc:.2f}")
        return 0
    try:
        check_run(args.run_dir, epoch=args.epoch)
    except RunFolderError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
