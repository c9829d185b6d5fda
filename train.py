r"""Train or evaluate a CLIP prompt-learning trainer: the CoOp-family command line.

    python train.py --root DATA --trainer DeAR --dataset-config-file configs/datasets/dtd.yaml \
        --config-file configs/dear.yaml --output-dir output/run --seed 1 DATASET.NUM_SHOTS 16

Config merge order: defaults -> dataset YAML -> trainer YAML -> command-line flags -> the trainer's official
per-data-set values (MMRL's) -> trailing KEY VALUE overrides -> freeze (so a mistyped key fails loudly).

Rerunning the same command resumes an interrupted run exactly (from <output>/<model>/model-last.pth.tar).
The output folder receives config.yaml (the merged config), log.txt and the checkpoints; a second process
into the same folder is refused. Errors you can fix (a bad path, key or value) end in one line starting with
"error:"; set DEAR_TRACEBACK=1 to see the traceback too.

Several GPUs (or CPU processes): ``torchrun --nproc_per_node=N train.py ...`` with the same arguments. The
built-in engine then shards every global batch (DATALOADER.TRAIN_X.BATCH_SIZE, which must divide by N) over
the N processes, averages the learner's gradients with DDP, scores every test image once, and rank 0 alone
writes the log, config.yaml, checkpoints, tensorboard and the lock (see dasslite/distributed.py).
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import shutil
import sys
import traceback

import torch

import dasslite

ENGINE = dasslite.use_dassl()

from dassl.data.datasets import DATASET_REGISTRY  # noqa: E402
from dassl.engine import TRAINER_REGISTRY, build_trainer  # noqa: E402
from dassl.utils import collect_env_info, set_random_seed  # noqa: E402

import datasets  # noqa: E402,F401  (registers every data set)
import runs  # noqa: E402
import trainers  # noqa: E402,F401  (registers every trainer)
from clipkit.config import ConfigError, load_config  # noqa: E402
from clipkit.determinism import pin_if_requested  # noqa: E402
from dasslite import distributed  # noqa: E402
from dasslite.config import check_cfg as check_engine_cfg  # noqa: E402
from dasslite.utils.logger import teardown_logger, tee_to  # noqa: E402

# Errors a user causes and can fix from the message alone: reported in one line, without a traceback.
USER_ERRORS = (ValueError, KeyError, OSError, FloatingPointError, runs.RunLocked)


class UsageError(ValueError):
    """The command line is incomplete or names something that does not exist."""


def print_args(args: argparse.Namespace, cfg) -> None:
    print("***************")
    print("** Arguments **")
    print("***************")
    for key in sorted(args.__dict__):
        print(f"{key}: {args.__dict__[key]}")
    print("************")
    print("** Config **")
    print("************")
    print(cfg)


def flag_overrides(args: argparse.Namespace) -> dict:
    """Command-line flags override the YAML files."""
    pairs = [("DATASET.ROOT", args.root), ("OUTPUT_DIR", args.output_dir), ("RESUME", args.resume),
             ("SEED", args.seed), ("DATASET.SOURCE_DOMAINS", args.source_domains),
             ("DATASET.TARGET_DOMAINS", args.target_domains), ("INPUT.TRANSFORMS", args.transforms),
             ("TRAINER.NAME", args.trainer), ("MODEL.BACKBONE.NAME", args.backbone), ("MODEL.HEAD.NAME", args.head)]
    return {k: v for k, v in pairs if v is not None and v != "" and v != []}


def setup_cfg(args: argparse.Namespace):
    """defaults -> dataset YAML -> trainer YAML -> flags -> per-data-set table -> KEY VALUE overrides -> freeze
    (:func:`clipkit.config.load_config`). Raises :class:`clipkit.config.ConfigError` naming the file and
    line, or the key, that is wrong."""
    return load_config(args.config_file, args.dataset_config_file, args.opts or [], overrides=flag_overrides(args))


def _dataset_configs() -> list[str]:
    folder = osp.join(osp.dirname(osp.abspath(__file__)), "configs", "datasets")
    if not osp.isdir(folder):
        return []
    return sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".yaml"))


def preflight(args: argparse.Namespace, cfg) -> None:
    """Everything that can be checked before a file is written: what to run, on what, and the values."""
    trainer_names = ", ".join(sorted(TRAINER_REGISTRY.registered_names()))
    dataset_names = ", ".join(sorted(DATASET_REGISTRY.registered_names()))
    missing = []
    if not cfg.TRAINER.NAME:
        missing.append(f"a trainer: --trainer NAME (one of {trainer_names})")
    if not cfg.DATASET.NAME:
        missing.append("a data set: --dataset-config-file configs/datasets/NAME.yaml (NAME one of "
                       f"{', '.join(_dataset_configs())})")
    if missing:
        root = "" if cfg.DATASET.ROOT else " and --root DATA (the folder holding the data sets)"
        raise UsageError("nothing to run: give " + "; and ".join(missing) + root + ". Example:\n"
                         + __doc__.split("\n\n")[1].rstrip())
    if cfg.TRAINER.NAME not in TRAINER_REGISTRY.registered_names():  # Dassl's Registry has no __contains__
        raise UsageError(f"unknown trainer {cfg.TRAINER.NAME!r} (--trainer / TRAINER.NAME); available: "
                         f"{trainer_names}")
    if cfg.DATASET.NAME not in DATASET_REGISTRY.registered_names():
        raise UsageError(f"unknown data set {cfg.DATASET.NAME!r} (DATASET.NAME); available: {dataset_names}")
    check_engine_cfg(cfg)
    if cfg.RESUME:
        if not osp.isdir(cfg.RESUME):
            raise UsageError(f"--resume {cfg.RESUME}: the folder does not exist (give the output folder of the "
                             "run to continue; rerunning with the same --output-dir resumes on its own)")
        if not runs.inspect_run(cfg.RESUME).epochs:
            raise UsageError(f"--resume {cfg.RESUME}: the folder holds no checkpoint (<model>/model-last.pth.tar "
                             "or model.pth.tar-<epoch>)")
    if args.eval_only and args.model_dir:
        runs.check_run(args.model_dir, epoch=args.load_epoch)
    world = distributed.env_world_size()
    if world > 1:
        if ENGINE == "dassl":
            raise UsageError(f"torchrun started {world} processes, but Dassl.pytorch is installed and serves "
                             "`dassl`; its trainer does not shard batches over processes: set DEAR_ENGINE=builtin "
                             "(or run one process)")
        if not args.eval_only:
            distributed.check_global_batch(cfg.DATALOADER.TRAIN_X.BATCH_SIZE, world)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=str, default="", help="path to the data sets folder")
    parser.add_argument("--output-dir", type=str, default="", help="output directory")
    parser.add_argument("--resume", type=str, default="", help="checkpoint directory to resume from")
    parser.add_argument("--seed", type=int, default=None, help="seed (negative: no seeding)")
    parser.add_argument("--source-domains", type=str, nargs="+", help="source domains (DG)")
    parser.add_argument("--target-domains", type=str, nargs="+", help="target domains (DG)")
    parser.add_argument("--transforms", type=str, nargs="+", help="data augmentation methods")
    parser.add_argument("--config-file", type=str, default="", help="trainer config file")
    parser.add_argument("--dataset-config-file", type=str, default="", help="dataset config file")
    parser.add_argument("--trainer", type=str, default="", help="trainer name, e.g. DeAR or ZeroshotCLIP")
    parser.add_argument("--backbone", type=str, default="", help="CLIP backbone name, e.g. ViT-B/16")
    parser.add_argument("--head", type=str, default="", help="name of head (unused by CLIP trainers)")
    parser.add_argument("--eval-only", action="store_true", help="evaluation only")
    parser.add_argument("--model-dir", type=str, default="", help="load model from this directory for eval-only")
    parser.add_argument("--load-epoch", type=int, help="load the weights saved at this epoch")
    parser.add_argument("--no-train", action="store_true", help="do not call trainer.train()")
    parser.add_argument("--print-config", action="store_true", help="print the merged config and exit")
    parser.add_argument("--list-trainers", action="store_true", help="print the registered trainers and exit")
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER,
                        help="modify config options using the command line (KEY VALUE pairs)")
    return parser


def report(e: BaseException) -> None:
    """One line on stderr; the traceback too with ``DEAR_TRACEBACK=1``. Under torchrun, ranks > 0 say who they are."""
    msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
    if type(e).__module__ == "builtins" and not isinstance(e, UsageError):
        msg = f"{type(e).__name__}: {msg} (DEAR_TRACEBACK=1 shows where)"
    if os.environ.get("DEAR_TRACEBACK"):
        traceback.print_exc()
    rank = distributed.env_rank()
    print(f"error{f' (rank {rank})' if rank else ''}: {msg}", file=sys.stderr, flush=True)


def _first_missing_ancestor(folder: str) -> str | None:
    """The outermost folder of ``folder``'s path that does not exist yet (``None`` if ``folder`` exists)."""
    folder = osp.abspath(folder)
    missing = None
    while not osp.exists(folder):
        missing, parent = folder, osp.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return missing


def _remove_new_entries(folder: str, created_from: str | None, before: set[str]) -> None:
    """Undo what a run that failed before training wrote, so the folder does not look like a run: the entries
    it added, and the folders it created (``folder`` up to ``created_from``) once they are empty."""
    if not osp.isdir(folder):
        return
    for name in set(os.listdir(folder)) - before:
        path = osp.join(folder, name)
        if osp.isdir(path) and not osp.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.remove(path)
            except OSError:
                pass
    if created_from is None:
        return
    current = osp.abspath(folder)
    while True:
        try:
            os.rmdir(current)
        except OSError:
            return
        if current == created_from:
            return
        current = osp.dirname(current)


def main(argv: list[str] | None = None) -> int:
    pin_if_requested()  # DEAR_NUMERICS=pinned: the same bits on every machine (clipkit.determinism)
    args = build_parser().parse_args(argv)
    if args.list_trainers:
        print("\n".join(sorted(TRAINER_REGISTRY.registered_names())))
        return 0
    try:
        cfg = setup_cfg(args)
        if args.print_config:
            print(cfg)
            return 0
        preflight(args, cfg)
    except (ConfigError, ValueError, runs.RunFolderError) as e:
        if distributed.env_rank() == 0:  # every rank finds the same problem; one says it
            report(e)
        return 2
    distributed.init_from_env(use_cuda=cfg.USE_CUDA)  # torchrun: the process group; one process: nothing
    try:
        return run(args, cfg)
    finally:
        distributed.shutdown()


def run(args: argparse.Namespace, cfg) -> int:
    """Train or evaluate with a checked config. Under torchrun every rank runs this; rank 0 alone takes the
    lock and writes the log and config.yaml (the other ranks' stdout is discarded; errors still reach stderr)."""
    main_rank = distributed.is_main_process()
    out = cfg.OUTPUT_DIR
    created_from = _first_missing_ancestor(out)
    before = set(os.listdir(out)) if created_from is None else set()
    lock = runs.RunLock(out)
    locked: runs.RunLocked | None = None
    if main_rank:
        try:
            lock.acquire()
        except runs.RunLocked as e:
            locked = e
    if distributed.broadcast(locked is not None):  # every rank learns whether rank 0 holds the lock
        if locked is not None:
            report(locked)
        return 1
    started = undo = False
    stdout, muted = sys.stdout, None
    try:
        if not main_rank:
            sys.stdout = muted = open(os.devnull, "w")  # noqa: SIM115 (closed in finally)
        if cfg.SEED >= 0:
            print(f"Setting fixed seed: {cfg.SEED}")
            set_random_seed(cfg.SEED)  # every rank; the engine moves ranks > 0 to their own seeds after build
        if main_rank:
            log_file = tee_to(runs.log_file_for(out))
            if osp.basename(log_file) == runs.LOG_FILE and runs.LOG_FILE in before:
                print(f"==> appending to {log_file}: this folder holds an unfinished run (resume or retry)")
        if distributed.is_distributed():
            world, batch = distributed.get_world_size(), cfg.DATALOADER.TRAIN_X.BATCH_SIZE
            print(f"torchrun: {world} processes ({distributed.get_backend_name()}), rank 0 writes; "
                  + ("evaluation only" if args.eval_only else f"global batch {batch} = {world} x {batch // world}"))
        if torch.cuda.is_available() and cfg.USE_CUDA:
            torch.backends.cudnn.benchmark = True
        print(f"Engine: {'Dassl.pytorch' if ENGINE == 'dassl' else 'built-in dasslite'}")
        print_args(args, cfg)
        print("Collecting env info ...")
        print(f"** System info **\n{collect_env_info()}\n")
        if main_rank:
            runs.save_run_config(cfg, out)

        trainer = build_trainer(cfg)
        if args.eval_only:
            trainer.load_model(args.model_dir, epoch=args.load_epoch)
            started = True
            trainer.test()
        elif not args.no_train:
            started = True
            trainer.train()
        return 0
    except USER_ERRORS as e:
        undo = not started
        report(e)
        return 1
    except BaseException:
        undo = not started
        raise
    finally:
        if muted is not None:
            sys.stdout = stdout
            muted.close()
        teardown_logger()
        lock.release()
        if undo and main_rank:
            _remove_new_entries(out, created_from, before)


if __name__ == "__main__":
    sys.exit(main())
