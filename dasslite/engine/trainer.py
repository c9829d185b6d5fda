"""The trainer contract of Dassl: ``TrainerBase`` -> ``SimpleTrainer`` -> ``TrainerX``.

A subclass implements ``build_model`` (and registers its trainable modules with ``register_model``) and
``forward_backward``; everything else (epochs, lr steps, logging, checkpoints, evaluation) is here.

On top of Dassl, resuming is exact: besides the epoch checkpoints (``<model>/model.pth.tar-<N>``, which the
protocols load), the engine keeps ``<model>/model-last.pth.tar``, rewritten atomically at the end of every
epoch and every ``TRAIN.LAST_CHECKPOINT_ITERS`` iterations, holding under ``"engine"`` everything the rest of
the run depends on: the position in the epoch and the sampler's seed, the Python / NumPy / torch / CUDA RNG
states, ``best_result`` and :meth:`TrainerBase.extra_checkpoint_state` (grad scalers by default). Rerunning
the same command after ``kill -9`` continues with the batch after the last saved one and ends with the same
weights, bit for bit on CPU, as an uninterrupted run.

Under ``torchrun`` (``WORLD_SIZE`` > 1, see :mod:`dasslite.distributed`) the same trainer runs once per rank:
each rank trains on its slice of every global batch (``DATALOADER.TRAIN_X.BATCH_SIZE`` is the global batch),
:meth:`TrainerBase.distribute_models` wraps what trains in ``DistributedDataParallel``, evaluation scores every
image once over all ranks, and rank 0 alone writes checkpoints and tensorboard. The last checkpoint then also
holds every rank's RNG states (``"ranks"``), so a resume with the same number of processes is exact too.
"""
from __future__ import annotations

import datetime
import os.path as osp
import time
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from .. import distributed
from ..config import check_cfg as check_engine_cfg
from ..data import DataManager
from ..evaluation import build_evaluator
from ..utils import (
    AverageMeter,
    MetricMeter,
    load_checkpoint,
    mkdir_if_missing,
    tolist_if_not,
)
from ..utils.atomic import remove_stale_temporaries
from ..utils.rng import capture_rng_state, restore_rng_state
from ..utils.tools import set_random_seed
from ..utils.torchtools import (
    LAST_CHECKPOINT,
    CheckpointError,
    Progress,
    checkpoint_progress,
    find_resume_checkpoint,
    save_checkpoint,
)

ENGINE_STATE_VERSION = 1


class TrainerBase:
    """Model registry, checkpointing, tensorboard and the epoch loop."""

    def __init__(self) -> None:
        self._models: OrderedDict[str, nn.Module] = OrderedDict()
        self._optims: OrderedDict = OrderedDict()
        self._scheds: OrderedDict = OrderedDict()
        self._writer = None

    def register_model(self, name: str = "model", model: nn.Module | None = None, optim=None, sched=None) -> None:
        if self.__dict__.get("_models") is None:
            raise AttributeError("Cannot assign model before super().__init__() call")
        if name in self._models:
            raise KeyError(f"Model {name!r} is already registered")
        self._models[name] = model
        self._optims[name] = optim
        self._scheds[name] = sched

    def get_model_names(self, names=None) -> list[str]:
        names_real = list(self._models.keys())
        if names is not None:
            names = tolist_if_not(names)
            for name in names:
                if name not in names_real:
                    raise KeyError(f"Unknown model {name!r}; registered: {names_real}")
            return names
        return names_real

    def save_model(self, epoch: int, directory: str, is_best: bool = False, val_result=None,
                   model_name: str = "", engine_state: dict | None = None) -> None:
        """Save every registered model as Dassl does (``epoch`` is the 0-based epoch just finished).

        ``engine_state`` (see :meth:`engine_state`) is stored under ``"engine"`` so that the file alone
        resumes exactly.
        """
        self._save_models(directory, epoch + 1, model_name=model_name, is_best=is_best, val_result=val_result,
                          engine_state=engine_state)

    def _save_models(self, directory: str, completed_epochs: int, model_name: str = "", is_best: bool = False,
                     val_result=None, engine_state: dict | None = None, verbose: bool = True) -> None:
        if not distributed.is_main_process():
            return  # rank 0 writes; every rank holds the same weights
        for name in self.get_model_names():
            model_dict = self._models[name].state_dict()
            optim_dict = self._optims[name].state_dict() if self._optims[name] is not None else None
            sched_dict = self._scheds[name].state_dict() if self._scheds[name] is not None else None
            state = {"state_dict": model_dict, "epoch": completed_epochs, "optimizer": optim_dict,
                     "scheduler": sched_dict, "val_result": val_result}
            if engine_state is not None:
                state["engine"] = engine_state
            save_checkpoint(state, osp.join(directory, name), is_best=is_best, model_name=model_name,
                            verbose=verbose)

    # ---- exact resume -------------------------------------------------------------------------------------

    def extra_checkpoint_state(self) -> dict:
        """Trainer state, beyond models, optimizers and schedulers, that an exact resume needs.

        Override to add your own (plain data: tensors, numbers, strings, lists, dicts) and restore it in
        :meth:`load_extra_checkpoint_state`. The default saves every ``torch.amp.GradScaler`` held by the
        trainer or by one of its attributes (``self.scaler``, ``self.step.scaler``, ...), by attribute path.
        """
        return {"grad_scalers": {path: scaler.state_dict() for path, scaler in self._grad_scalers().items()}}

    def load_extra_checkpoint_state(self, state: dict) -> None:
        """Restore what :meth:`extra_checkpoint_state` saved (called before training resumes)."""
        scalers = self._grad_scalers()
        for path, scaler_state in (state or {}).get("grad_scalers", {}).items():
            if path in scalers and scaler_state:
                scalers[path].load_state_dict(scaler_state)

    def _grad_scalers(self) -> dict:
        scaler_type = getattr(getattr(torch, "amp", None), "GradScaler", None) or torch.cuda.amp.GradScaler
        found = {}
        for name, value in vars(self).items():
            if isinstance(value, scaler_type):
                found[name] = value
            elif not isinstance(value, (nn.Module, torch.Tensor, dict, list, tuple)) and hasattr(value, "__dict__"):
                for sub, inner in vars(value).items():
                    if isinstance(inner, scaler_type):
                        found[f"{name}.{sub}"] = inner
        return found

    def engine_state(self, next_batch: int = 0) -> dict:
        """What the engine needs to continue exactly from here: ``next_batch`` of the current epoch (0: at an
        epoch boundary), the epoch's sampler seed and start-of-epoch RNG state, every RNG state now,
        ``best_result`` and :meth:`extra_checkpoint_state`. Plain data only."""
        loader = getattr(self, "train_loader_x", None)
        sampler = getattr(loader, "sampler", None)
        mid_epoch = next_batch > 0
        state = {
            "version": ENGINE_STATE_VERSION,
            "next_batch": int(next_batch),
            "num_batches": int(getattr(self, "num_batches", 0)) if mid_epoch else None,
            "sampler_seed": getattr(sampler, "epoch_seed", None) if mid_epoch else None,
            "epoch_rng": getattr(self, "_epoch_rng", None) if mid_epoch else None,
            "num_workers": int(getattr(loader, "num_workers", 0) or 0),
            "rng": capture_rng_state(),
            "best_result": float(getattr(self, "best_result", -np.inf)),
            "trainer": self.extra_checkpoint_state(),
        }
        if distributed.is_distributed():  # a collective: every rank calls engine_state at the same points
            state["world_size"] = distributed.get_world_size()
            state["ranks"] = distributed.all_gather({"rng": state["rng"], "epoch_rng": state["epoch_rng"]})
        return state

    def _this_rank(self, engine: dict) -> dict:
        """``engine`` with this rank's own RNG states (saved by a run with as many processes as this one).

        With another number of processes the batches stay the same (the global batch and the permutation do
        not depend on it) but the augmentations cannot: rank 0 takes the saved single stream, the others keep
        their :func:`~dasslite.distributed.rank_seed` streams."""
        world, saved = distributed.get_world_size(), engine.get("world_size", 1)
        if saved == world:
            return dict(engine, **engine["ranks"][distributed.get_rank()]) if world > 1 else engine
        print(f"Note: the checkpoint was written by {saved} process(es), this run has {world}: training resumes "
              "with the same batches, but not with the same random augmentations as an uninterrupted run")
        if distributed.get_rank() == 0:
            return engine
        return dict(engine, rng=capture_rng_state(), epoch_rng=torch.get_rng_state())

    def save_last_checkpoint(self, directory: str, completed_epochs: int, next_batch: int = 0,
                             engine_state: dict | None = None) -> None:
        """Overwrite ``<model>/model-last.pth.tar`` atomically with the full resume state, and log it."""
        engine_state = engine_state if engine_state is not None else self.engine_state(next_batch)
        self._save_models(directory, completed_epochs, model_name=LAST_CHECKPOINT, engine_state=engine_state,
                          verbose=False)
        paths = ", ".join(osp.join(directory, name, LAST_CHECKPOINT) for name in self.get_model_names())
        print(f"Saved the last checkpoint ({Progress(completed_epochs, next_batch)}) to {paths}")

    def resume_model_if_exist(self, directory: str) -> int:
        """Load the most advanced complete checkpoint of every model in ``directory``; return the epoch to start.

        Also keeps its engine state (RNG, position in the epoch, ...) for :meth:`TrainerX.run_epoch`.
        Errors raised by a model's ``load_state_dict`` (a learner refusing a checkpoint made with other
        settings) propagate with their message.
        """
        self._resume_engine = None
        self._resumed = False
        names = self.get_model_names()
        found = {}
        if distributed.is_main_process():
            for name in names:
                if osp.isdir(osp.join(directory, name)):
                    remove_stale_temporaries(osp.join(directory, name))
        distributed.barrier()
        for name in names:
            fdir = osp.join(directory, name)
            if not osp.isdir(fdir):
                continue
            hit = find_resume_checkpoint(fdir)
            if hit is not None:
                found[name] = hit
        if not found:
            print("No checkpoint found, train from scratch")
            return 0
        missing = [n for n in names if n not in found]
        if missing:
            raise CheckpointError(f"{directory} has checkpoints for {sorted(found)} but not for {missing}; "
                                  "it was written by another trainer, or delete it to train from scratch")
        found = self._consistent_checkpoints(directory, found)
        self._resumed = True
        print(f'Found checkpoint at "{directory}" (will resume training)')
        start_epoch = 0
        for name in names:
            fpath, checkpoint = found[name]
            print(f'Loading checkpoint from "{fpath}" ({checkpoint_progress(checkpoint)})')
            self._models[name].load_state_dict(checkpoint["state_dict"])
            if self._optims[name] is not None and checkpoint.get("optimizer") is not None:
                self._optims[name].load_state_dict(checkpoint["optimizer"])
            if self._scheds[name] is not None and checkpoint.get("scheduler") is not None:
                self._scheds[name].load_state_dict(checkpoint["scheduler"])
            start_epoch = checkpoint["epoch"]
        engine = found[names[0]][1].get("engine")
        print(f"Previous epoch: {start_epoch}")
        if engine is not None:
            engine = self._this_rank(engine)
        if engine is None:
            print("Note: this checkpoint holds no RNG states (written by Dassl or an older version): training "
                  "resumes at the start of the epoch, but not bit for bit as an uninterrupted run would.")
            return start_epoch
        self.best_result = engine.get("best_result", self.best_result)
        self.load_extra_checkpoint_state(engine.get("trainer", {}))
        if engine.get("next_batch", 0) > 0:
            self._resume_engine = engine  # run_epoch picks up the position in the epoch and the RNG states
        else:
            restore_rng_state(engine["rng"])
        return start_epoch

    def _consistent_checkpoints(self, directory: str, found: dict) -> dict:
        """With several models, use checkpoints that were all saved at the same point (a crash between two
        models' saves leaves the first one ahead): fall back to the least advanced one's point."""
        progress = {name: checkpoint_progress(ckpt) for name, (_, ckpt) in found.items()}
        target = min(progress.values(), key=lambda p: (p.epoch, p.batch))
        out = {}
        for name, (path, ckpt) in found.items():
            if progress[name] == target:
                out[name] = (path, ckpt)
                continue
            epoch_file = osp.join(directory, name, f"model.pth.tar-{target.epoch}")
            if target.batch == 0 and osp.exists(epoch_file):
                out[name] = (epoch_file, load_checkpoint(epoch_file))
                continue
            raise CheckpointError(
                f"{directory}: the models' checkpoints were saved at different points "
                f"({', '.join(f'{n}: {p}' for n, p in progress.items())}); delete {LAST_CHECKPOINT} in every "
                "model folder to resume from the newest epoch checkpoints"
            )
        return out

    def load_model(self, directory: str, epoch: int | None = None) -> None:
        if not directory:
            print("Note that load_model() is skipped as no pretrained model is given")
            return
        model_file = "model-best.pth.tar" if epoch is None else f"model.pth.tar-{epoch}"
        for name in self.get_model_names():
            model_path = osp.join(directory, name, model_file)
            if not osp.exists(model_path):
                raise FileNotFoundError(f'Model not found at "{model_path}"')
            checkpoint = load_checkpoint(model_path)
            print(f'Load {model_path} to {name} (epoch={checkpoint["epoch"]}, '
                  f'val_result={checkpoint.get("val_result")})')
            self._models[name].load_state_dict(checkpoint["state_dict"])

    def set_model_mode(self, mode: str = "train", names=None) -> None:
        for name in self.get_model_names(names):
            self._models[name].train(mode == "train")

    def update_lr(self, names=None) -> None:
        for name in self.get_model_names(names):
            if self._scheds[name] is not None:
                self._scheds[name].step()

    def detect_anomaly(self, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss).all():
            raise FloatingPointError("Loss is infinite or NaN!")

    def init_writer(self, log_dir: str) -> None:
        if self.__dict__.get("_writer") is None and distributed.is_main_process():
            from torch.utils.tensorboard import SummaryWriter

            print(f"Initialize tensorboard (log_dir={log_dir})")
            self._writer = SummaryWriter(log_dir=log_dir)

    def close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def write_scalar(self, tag: str, scalar_value, global_step=None) -> None:
        if self._writer is not None:
            self._writer.add_scalar(tag, scalar_value, global_step)

    def train(self, start_epoch: int, max_epoch: int) -> None:
        self.start_epoch = start_epoch
        self.max_epoch = max_epoch
        self.before_train()
        for self.epoch in range(self.start_epoch, self.max_epoch):
            self.before_epoch()
            self.run_epoch()
            self.after_epoch()
        self.after_train()

    def before_train(self) -> None:
        pass

    def after_train(self) -> None:
        pass

    def before_epoch(self) -> None:
        pass

    def after_epoch(self) -> None:
        pass

    def run_epoch(self) -> None:
        raise NotImplementedError

    def test(self):
        raise NotImplementedError

    def parse_batch_train(self, batch):
        raise NotImplementedError

    def parse_batch_test(self, batch):
        raise NotImplementedError

    def forward_backward(self, batch):
        raise NotImplementedError

    def model_inference(self, input):
        raise NotImplementedError

    def model_zero_grad(self, names=None) -> None:
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].zero_grad()

    def model_backward(self, loss: torch.Tensor) -> None:
        self.detect_anomaly(loss)
        loss.backward()

    def model_update(self, names=None) -> None:
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].step()

    def model_backward_and_update(self, loss: torch.Tensor, names=None) -> None:
        self.model_zero_grad(names)
        self.model_backward(loss)
        self.model_update(names)

    # ---- several processes (torchrun) ---------------------------------------------------------------------

    def distribute_models(self) -> None:
        """Wrap what trains in ``DistributedDataParallel``; called on every rank after ``build_model`` when the
        run has several processes, never in one process.

        An override must make every trainable parameter's gradient pass through a DDP wrapper (so that
        gradients are averaged over ranks) without changing the registered modules, whose ``state_dict`` are
        the checkpoints. The default wraps ``self.model`` when it is the one registered model with trainable
        parameters, and calls it through the wrapper from then on; anything else must override.
        """
        trainable = [n for n, m in self._models.items() if any(p.requires_grad for p in m.parameters())]
        if not trainable:
            return
        model = getattr(self, "model", None)
        if trainable == [n for n, m in self._models.items() if m is model]:
            self.model = distributed.wrap_ddp(model, self.device)
            return
        raise NotImplementedError(
            f"{type(self).__name__} trains {trainable}; override distribute_models() to wrap them in "
            "DistributedDataParallel for torchrun, or run it in one process"
        )


class SimpleTrainer(TrainerBase):
    """A trainer with one data manager, an evaluator and the standard train/test flow."""

    def __init__(self, cfg) -> None:
        super().__init__()
        check_engine_cfg(cfg)
        self.check_cfg(cfg)
        if torch.cuda.is_available() and cfg.USE_CUDA:
            self.device = torch.device("cuda", torch.cuda.current_device()) if distributed.is_distributed() \
                else torch.device("cuda")
        else:
            self.device = torch.device("cpu")
        self.start_epoch = self.epoch = 0
        self.max_epoch = cfg.OPTIM.MAX_EPOCH
        self.output_dir = cfg.OUTPUT_DIR
        self.cfg = cfg
        with distributed.main_process_first():  # rank 0 writes the few-shot caches, the others read them
            self.build_data_loader()
            self.build_model()
        if distributed.is_distributed():
            self.distribute_models()
            self._seed_this_rank()
        self.evaluator = build_evaluator(cfg, lab2cname=self.lab2cname)
        self.best_result = -np.inf
        self._resume_engine: dict | None = None

    def _seed_this_rank(self) -> None:
        """Ranks > 0 leave rank 0's stream once the model is built: see :mod:`dasslite.distributed`."""
        rank = distributed.get_rank()
        if rank > 0:
            base = self.cfg.SEED if self.cfg.SEED >= 0 else torch.initial_seed() % 2**32
            set_random_seed(distributed.rank_seed(base, rank))

    def check_cfg(self, cfg) -> None:
        """Reject unsupported settings; subclasses override."""

    def build_data_loader(self) -> None:
        dm = DataManager(self.cfg)
        self.train_loader_x = dm.train_loader_x
        self.train_loader_u = dm.train_loader_u
        self.val_loader = dm.val_loader
        self.test_loader = dm.test_loader
        self.num_classes = dm.num_classes
        self.num_source_domains = dm.num_source_domains
        self.lab2cname = dm.lab2cname
        self.dm = dm

    def build_model(self) -> None:
        raise NotImplementedError

    def train(self) -> None:  # type: ignore[override]
        super().train(self.start_epoch, self.max_epoch)

    def before_train(self) -> None:
        directory = self.cfg.OUTPUT_DIR
        if self.cfg.RESUME:
            directory = self.cfg.RESUME
        self.start_epoch = self.resume_model_if_exist(directory)
        if self.cfg.RESUME and not self._resumed:
            raise CheckpointError(f"--resume {directory} holds no checkpoint of this trainer's models "
                                  f"({', '.join(self.get_model_names())}): it was written by another trainer")
        if distributed.is_main_process():
            writer_dir = osp.join(self.output_dir, "tensorboard")
            mkdir_if_missing(writer_dir)
            self.init_writer(writer_dir)
        self.time_start = time.time()

    def after_train(self) -> None:
        print("Finish training")
        do_test = not self.cfg.TEST.NO_TEST
        if do_test:
            if self.cfg.TEST.FINAL_MODEL == "best_val":
                print("Deploy the model with the best val performance")
                distributed.barrier()  # rank 0 has written model-best
                self.load_model(self.output_dir)
            else:
                print("Deploy the last-epoch model")
            self.test()
        elapsed = round(time.time() - self.time_start)
        print(f"Elapsed: {datetime.timedelta(seconds=elapsed)}")
        self.close_writer()

    def after_epoch(self) -> None:
        """As Dassl: evaluate on val for ``best_val``, save the epoch checkpoint on ``CHECKPOINT_FREQ`` and at the
        last epoch; then rewrite the last checkpoint (the same engine state goes into both)."""
        last_epoch = (self.epoch + 1) == self.max_epoch
        do_test = not self.cfg.TEST.NO_TEST
        freq = self.cfg.TRAIN.CHECKPOINT_FREQ
        meet_checkpoint_freq = (self.epoch + 1) % freq == 0 if freq > 0 else False
        if do_test and self.cfg.TEST.FINAL_MODEL == "best_val":
            curr_result = self.test(split="val")
            is_best = curr_result > self.best_result
            if is_best:
                self.best_result = curr_result
                self.save_model(self.epoch, self.output_dir, val_result=curr_result, model_name="model-best.pth.tar")
        engine_state = self.engine_state(next_batch=0)
        if meet_checkpoint_freq or last_epoch:
            self.save_model(self.epoch, self.output_dir, engine_state=engine_state)
        self.save_last_checkpoint(self.output_dir, self.epoch + 1, engine_state=engine_state)

    @torch.no_grad()
    def test(self, split: str | None = None) -> float:
        """Evaluate on ``split`` (``cfg.TEST.SPLIT`` by default); return the first metric (accuracy)."""
        self.set_model_mode("eval")
        self.evaluator.reset()
        if split is None:
            split = self.cfg.TEST.SPLIT
        if split == "val" and self.val_loader is not None:
            data_loader = self.val_loader
        else:
            split = "test"
            data_loader = self.test_loader
        print(f"Evaluate on the *{split}* set")
        for batch in tqdm(data_loader, disable=not self.cfg.VERBOSE or not distributed.is_main_process()):
            input, label = self.parse_batch_test(batch)
            output = self.model_inference(input)
            self.evaluator.process(output, label)
        results = self.evaluator.evaluate()
        for k, v in results.items():
            self.write_scalar(f"{split}/{k}", v, self.epoch)
        return list(results.values())[0]

    def model_inference(self, input):
        return self.model(input)

    def parse_batch_test(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def get_current_lr(self, names=None) -> float:
        name = self.get_model_names(names)[0]
        return self._optims[name].param_groups[0]["lr"]


class TrainerX(SimpleTrainer):
    """Trainer on labelled data only (``train_loader_x``)."""

    def run_epoch(self) -> None:
        self.set_model_mode("train")
        losses = MetricMeter()
        batch_time = AverageMeter()
        data_time = AverageMeter()
        self.num_batches = len(self.train_loader_x)
        batches, start = self._epoch_batches()
        last_every = self.cfg.TRAIN.get("LAST_CHECKPOINT_ITERS", 0)
        end = time.time()
        for self.batch_idx, batch in enumerate(batches, start):
            data_time.update(time.time() - end)
            loss_summary = distributed.mean_over_ranks(self.forward_backward(batch))  # global-batch values
            batch_time.update(time.time() - end)
            losses.update(loss_summary)

            meet_freq = (self.batch_idx + 1) % self.cfg.TRAIN.PRINT_FREQ == 0
            only_few_batches = self.num_batches < self.cfg.TRAIN.PRINT_FREQ
            if meet_freq or only_few_batches:
                nb_remain = self.num_batches - self.batch_idx - 1
                nb_remain += (self.max_epoch - self.epoch - 1) * self.num_batches
                eta = str(datetime.timedelta(seconds=int(batch_time.avg * nb_remain)))
                print(
                    f"epoch [{self.epoch + 1}/{self.max_epoch}] batch [{self.batch_idx + 1}/{self.num_batches}] "
                    f"time {batch_time.val:.3f} ({batch_time.avg:.3f}) data {data_time.val:.3f} "
                    f"({data_time.avg:.3f}) {losses} lr {self.get_current_lr():.4e} eta {eta}"
                )
            n_iter = self.epoch * self.num_batches + self.batch_idx
            for name, meter in losses.meters.items():
                self.write_scalar("train/" + name, meter.avg, n_iter)
            self.write_scalar("train/lr", self.get_current_lr(), n_iter)
            done = self.batch_idx + 1
            if last_every > 0 and done % last_every == 0 and done < self.num_batches:
                self.save_last_checkpoint(self.output_dir, self.epoch, next_batch=done)
            end = time.time()

    def _epoch_batches(self):
        """``(iterator over this epoch's batches, index of its first batch)``; in a resumed epoch, the batches
        after the last saved one, with every RNG where it was when that checkpoint was written.

        Without workers the sampler replays the saved permutation from the saved position (no image is
        read twice); with workers, whose RNGs live in their processes, the epoch's start is replayed: the
        global RNG is set back to its start-of-epoch state (so the workers get the same seeds) and the
        batches already trained on are loaded again and dropped.
        """
        loader = self.train_loader_x
        resume, self._resume_engine = self._resume_engine, None
        self._epoch_rng = torch.get_rng_state()  # the loader draws its seeds from here (see dassl.data.samplers)
        if not resume:
            return iter(loader), 0
        next_batch = resume["next_batch"]
        if resume.get("num_batches") != self.num_batches:
            raise CheckpointError(
                f"{self.output_dir}: the last checkpoint was saved after batch {next_batch} of "
                f"{resume.get('num_batches')} in epoch {self.epoch + 1}, but this run has {self.num_batches} "
                "batches per epoch (the data or DATALOADER.TRAIN_X.BATCH_SIZE changed). Use the settings of the "
                f"interrupted run, or delete {LAST_CHECKPOINT} to resume from the last epoch checkpoint."
            )
        if resume.get("num_workers", loader.num_workers) != loader.num_workers:
            print(f"Note: DATALOADER.NUM_WORKERS changed ({resume.get('num_workers')} -> {loader.num_workers}): "
                  "the resumed epoch sees the same images but other random augmentations")
        sampler = loader.sampler
        if loader.num_workers == 0 and hasattr(sampler, "resume_at") and resume.get("sampler_seed") is not None:
            sampler.resume_at(resume["sampler_seed"], next_batch * loader.batch_size)
            batches = iter(loader)
        else:
            torch.set_rng_state(resume["epoch_rng"])
            batches = iter(loader)
            for _ in range(next_batch):
                next(batches)
        restore_rng_state(resume["rng"])
        self._epoch_rng = resume["epoch_rng"]
        print(f"Resuming epoch {self.epoch + 1} at batch {next_batch + 1}/{self.num_batches}")
        return batches, next_batch

    def parse_batch_train(self, batch):
        """``(input, label, domain)`` as in Dassl; CLIP trainers override it to return two."""
        input = batch["img"].to(self.device)
        label = batch["label"].to(self.device)
        domain = batch["domain"].to(self.device)
        return input, label, domain
