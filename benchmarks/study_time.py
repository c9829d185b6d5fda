"""Projected wall time of the paper's base-to-novel study (11 data sets x 3 seeds) for one trainer on this machine.

    python -m benchmarks.study_time [--trainer DeAR] [--prec amp] [--seeds 3] [--rounds 5] [--workers 8]
        [--images 512] [--json PATH]

Measured here, per data set of the study, with ViT-B/16 (random weights at its real shapes, 224 px) and the
trainer's base-to-novel config (``configs/<name>.yaml``: epochs, batch sizes, precision ``--prec``):
- the training step on the data set's base classes (median over ``--rounds``);
- the evaluation: the class text once, then ``DATALOADER.TEST.BATCH_SIZE`` images per batch, on the base and
  on the new classes;
- the data loader: images/s of the config's training and test transforms over JPEGs of a typical size
  (500 x 375, ``--images`` of them, written to a temporary folder) with ``--workers`` workers, read by
  ``dasslite``'s ``DatasetWrapper`` as training reads them.
The projection of a phase is the slower of its computation and its loading (the loader's workers run beside the
GPU); the sum of both is printed too, as the bound if nothing overlapped. Not counted: building the model (a
few seconds per run), reading the split files, checkpoint writes.

Per data set, from the CoOp splits: classes (base = ceil(n/2), as Dassl's ``subsample_classes``), test images
(each half of the classes evaluated on its share of them, by class count), 16 shots per base class for
training, ``floor(train / batch)`` iterations per epoch (Dassl drops the last incomplete batch).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time

import torch

from benchmarks import common
from clipkit.precision import resolve_precision
from clipkit.tiny import VIT_B16_SHAPE, build_clip

# name: (classes, test images) of the CoOp splits (split_zhou_*.json; ImageNet: the 50,000 validation images)
STUDY: dict[str, tuple[int, int]] = {
    "imagenet": (1000, 50000), "caltech101": (100, 2465), "oxford_pets": (37, 3669),
    "stanford_cars": (196, 8041), "oxford_flowers": (102, 2463), "food101": (101, 30300),
    "fgvc_aircraft": (100, 3333), "sun397": (397, 19850), "dtd": (47, 1692), "eurosat": (10, 8100),
    "ucf101": (101, 3783),
}
SHOTS = 16


def plan(classes: int, test: int, batch: int, epochs: int) -> dict[str, int]:
    base = math.ceil(classes / 2)
    new = classes - base
    train = SHOTS * base
    iters = train // batch if train >= batch else 1
    test_base = round(test * base / classes)
    return {"base": base, "new": new, "train": train, "iters": epochs * iters,
            "test_base": test_base, "test_new": test - test_base}


def loader_rate(cfg, is_train: bool, images: int, workers: int, batch: int) -> float:
    """Images/s of the config's transforms over ``images`` JPEGs of 500 x 375 with ``workers`` workers."""
    import numpy as np
    from PIL import Image

    from dasslite.data.data_manager import DatasetWrapper
    from dasslite.data.datasets.base_dataset import Datum
    from dasslite.data.transforms.transforms import build_transform

    with tempfile.TemporaryDirectory() as folder:
        rng = np.random.default_rng(0)
        items = []
        for i in range(images):
            path = os.path.join(folder, f"{i}.jpg")
            # smooth random content (noise alone compresses and decodes unlike photographs)
            small = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
            Image.fromarray(small).resize((500, 375), Image.BICUBIC).save(path, quality=90)
            items.append(Datum(impath=path, label=i % 10))
        wrapper = DatasetWrapper(cfg, items, transform=build_transform(cfg, is_train=is_train), is_train=is_train)
        # a steady state needs several batches per worker: the per-image cost does not depend on the batch,
        # so the rate is measured with batches small enough (a test batch of 250 over 512 images would keep
        # most workers idle and understate the rate)
        batch = max(1, min(batch, images // (4 * max(workers, 1))))
        loader = torch.utils.data.DataLoader(wrapper, batch_size=batch, num_workers=workers, shuffle=False,
                                             persistent_workers=False)
        next(iter(loader))  # workers started once before timing
        t0 = time.perf_counter()
        n = sum(b["img"].shape[0] for b in loader)
        return n / (time.perf_counter() - t0)


def measure_dataset(name, cfg, clip, train_images, test_images, rates, rounds, g) -> dict:
    """One data set's plan, its measured step and evaluation, and its projected run time."""
    device = train_images.device
    batch, test_batch = train_images.shape[0], test_images.shape[0]
    classes, test = STUDY[name]
    pl = plan(classes, test, batch, cfg.OPTIM.MAX_EPOCH)
    names = common.class_names(classes)
    torch.manual_seed(0)
    tr = common.make_trainer(cfg, clip, names[:pl["base"]], device=device)
    label = torch.randint(0, pl["base"], (batch,), generator=g).to(device)
    step = common.interleaved({"step": lambda: common.train_step(tr, train_images, label)}, device,
                                 rounds)["step"]
    ev = {}
    for half, half_names in (("base", names[:pl["base"]]), ("new", names[pl["base"]:])):
        tr.model.set_classes(half_names, tr.template)
        t = common.interleaved({"text": lambda: common.eval_text(tr),
                                   "batch": lambda: common.eval_batch(tr, test_images)}, device, rounds)
        ev[half] = t["text"] + t["batch"] * pl[f"test_{half}"] / test_batch
    train_compute = pl["iters"] * step
    train_load = pl["iters"] * batch / rates["train"]
    eval_compute = ev["base"] + ev["new"]
    eval_load = test / rates["test"]
    return dict(pl, step_s=step, train_compute_s=train_compute, train_load_s=train_load,
                eval_compute_s=eval_compute, eval_load_s=eval_load,
                run_s=max(train_compute, train_load) + max(eval_compute, eval_load),
                run_no_overlap_s=train_compute + train_load + eval_compute + eval_load)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trainer", default="DeAR")
    p.add_argument("--prec", default="amp", choices=["fp32", "amp", "bf16"])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--workers", type=int, default=8, help="loader workers (the configs' DATALOADER.NUM_WORKERS)")
    p.add_argument("--images", type=int, default=512, help="JPEGs the loader rate is measured on (0: skip)")
    p.add_argument("--datasets", nargs="+", default=list(STUDY))
    p.add_argument("--test-batch", type=int, help="test images per batch (default: the config's)")
    p.add_argument("--json", help="also write every figure here")
    args = p.parse_args()
    unknown = [d for d in args.datasets if d not in STUDY]
    if unknown:
        sys.exit(f"study_time: unknown data set(s) {unknown}; choose from {list(STUDY)}")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    trainer = common.trainer_name(args.trainer)
    cfg = common.bench_config(trainer, prec=args.prec)
    batch, test_batch = cfg.DATALOADER.TRAIN_X.BATCH_SIZE, args.test_batch or cfg.DATALOADER.TEST.BATCH_SIZE

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    rates = {"train": float("inf"), "test": float("inf")}
    if args.images:
        rates = {"train": loader_rate(cfg, True, args.images, args.workers, batch),
                 "test": loader_rate(cfg, False, args.images, args.workers, test_batch)}
        log(f"loader: {rates['train']:.0f} training images/s, {rates['test']:.0f} test images/s "
            f"({args.workers} workers)")
    clip = build_clip(image_resolution=224, **VIT_B16_SHAPE).to(device)
    g = torch.Generator().manual_seed(0)
    train_images = torch.randn(batch, 3, 224, 224, generator=g).to(device)
    test_images = torch.randn(test_batch, 3, 224, 224, generator=g).to(device)
    rows = {}
    for name in args.datasets:
        rows[name] = measure_dataset(name, cfg, clip, train_images, test_images, rates, args.rounds, g)
        log(f"{name}: step {rows[name]['step_s'] * 1000:.1f} ms, run {rows[name]['run_s']:.0f} s")
        if device.type == "cuda":
            torch.cuda.empty_cache()
    report(args, device, trainer, cfg, rates, rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "device": str(device), "gpu": gpu_name(device), "rates": rates,
                       "rows": rows}, f, indent=1)


def gpu_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def report(args, device, trainer, cfg, rates, rows) -> None:
    prec = resolve_precision(args.prec, device)
    print(f"{trainer} base-to-novel study on {gpu_name(device)} (PREC {prec}, ViT-B/16 at 224 px, "
          f"batch {cfg.DATALOADER.TRAIN_X.BATCH_SIZE}, {cfg.OPTIM.MAX_EPOCH} epochs, test batch "
          f"{args.test_batch or cfg.DATALOADER.TEST.BATCH_SIZE}, loader {args.workers} workers: {rates['train']:.0f} / "
          f"{rates['test']:.0f} images/s train / test)")
    print(f"{'data set':15s} {'classes':>7s} {'iters':>6s} {'step ms':>8s} {'train s':>8s} {'(load s)':>8s} "
          f"{'eval s':>7s} {'(load s)':>8s} {'run s':>7s}")
    for name, r in rows.items():
        print(f"{name:15s} {r['base']:3d}+{r['new']:<3d} {r['iters']:6d} {r['step_s'] * 1000:8.1f} "
              f"{r['train_compute_s']:8.0f} {r['train_load_s']:8.0f} {r['eval_compute_s']:7.0f} "
              f"{r['eval_load_s']:8.0f} {r['run_s']:7.0f}")
    one = sum(r["run_s"] for r in rows.values())
    bound = sum(r["run_no_overlap_s"] for r in rows.values())
    print(f"one seed of {len(rows)} data sets: {one / 60:.1f} min (no overlap of loading and compute: "
          f"{bound / 60:.1f} min)")
    print(f"projected study ({len(rows)} data sets x {args.seeds} seeds) on {gpu_name(device)}: "
          f"{one * args.seeds / 3600:.2f} h (bound {bound * args.seeds / 3600:.2f} h)")


if __name__ == "__main__":
    main()
