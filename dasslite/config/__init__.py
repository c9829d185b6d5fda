"""Default configuration, key for key the one of Dassl.pytorch 0.6.3 that CoOp-family configs set, plus the
engine keys of this project (:data:`ENGINE_KEYS`), and :func:`check_cfg`, which rejects values no engine can
run with before anything is written."""
from __future__ import annotations

from yacs.config import CfgNode as CN

__all__ = ["get_cfg_default", "CN", "check_cfg", "extend_engine_cfg", "ConfigValueError", "ENGINE_KEYS",
           "FINAL_MODELS"]

FINAL_MODELS = ("last_step", "best_val")
TEST_SPLITS = ("test", "val")


def _defaults() -> CN:
    _C = CN()
    _C.VERSION = 1
    _C.OUTPUT_DIR = "./output"  # where logs, checkpoints and tensorboard events go
    _C.RESUME = ""  # a run directory to resume from
    _C.SEED = -1  # negative: no seeding
    _C.USE_CUDA = True  # use CUDA when it is available
    _C.VERBOSE = True

    _C.INPUT = CN()
    _C.INPUT.SIZE = (224, 224)  # (height, width) fed to the network
    _C.INPUT.INTERPOLATION = "bilinear"  # bilinear, bicubic or nearest
    _C.INPUT.TRANSFORMS = ()  # training transforms, by name (see dassl.data.transforms)
    _C.INPUT.NO_TRANSFORM = False  # only resize + to-tensor
    _C.INPUT.PIXEL_MEAN = [0.485, 0.456, 0.406]
    _C.INPUT.PIXEL_STD = [0.229, 0.224, 0.225]
    _C.INPUT.CROP_PADDING = 4  # random_crop padding
    _C.INPUT.RRCROP_SCALE = (0.08, 1.0)  # random_resized_crop area range
    _C.INPUT.CUTOUT_N = 1
    _C.INPUT.CUTOUT_LEN = 16
    _C.INPUT.GN_MEAN = 0.0
    _C.INPUT.GN_STD = 0.15
    _C.INPUT.RANDAUGMENT_N = 2
    _C.INPUT.RANDAUGMENT_M = 10
    _C.INPUT.COLORJITTER_B = 0.4
    _C.INPUT.COLORJITTER_C = 0.4
    _C.INPUT.COLORJITTER_S = 0.4
    _C.INPUT.COLORJITTER_H = 0.1
    _C.INPUT.RGS_P = 0.2
    _C.INPUT.GB_P = 0.5
    _C.INPUT.GB_K = 21

    _C.DATASET = CN()
    _C.DATASET.ROOT = ""  # folder holding every data set
    _C.DATASET.NAME = ""  # registered data set name
    _C.DATASET.SOURCE_DOMAINS = ()
    _C.DATASET.TARGET_DOMAINS = ()
    _C.DATASET.NUM_LABELED = -1
    _C.DATASET.NUM_SHOTS = -1  # images per class for few-shot learning; -1 keeps all
    _C.DATASET.VAL_PERCENT = 0.1
    _C.DATASET.STL10_FOLD = -1
    _C.DATASET.CIFAR_C_TYPE = ""
    _C.DATASET.CIFAR_C_LEVEL = 1
    _C.DATASET.ALL_AS_UNLABELED = False

    _C.DATALOADER = CN()
    _C.DATALOADER.NUM_WORKERS = 4
    _C.DATALOADER.K_TRANSFORMS = 1
    _C.DATALOADER.RETURN_IMG0 = False
    _C.DATALOADER.TRAIN_X = CN()
    _C.DATALOADER.TRAIN_X.SAMPLER = "RandomSampler"
    _C.DATALOADER.TRAIN_X.BATCH_SIZE = 32
    _C.DATALOADER.TRAIN_X.N_DOMAIN = 0
    _C.DATALOADER.TRAIN_X.N_INS = 16
    _C.DATALOADER.TRAIN_U = CN()
    _C.DATALOADER.TRAIN_U.SAME_AS_X = True
    _C.DATALOADER.TRAIN_U.SAMPLER = "RandomSampler"
    _C.DATALOADER.TRAIN_U.BATCH_SIZE = 32
    _C.DATALOADER.TRAIN_U.N_DOMAIN = 0
    _C.DATALOADER.TRAIN_U.N_INS = 16
    _C.DATALOADER.TEST = CN()
    _C.DATALOADER.TEST.SAMPLER = "SequentialSampler"
    _C.DATALOADER.TEST.BATCH_SIZE = 32

    _C.MODEL = CN()
    _C.MODEL.INIT_WEIGHTS = ""
    _C.MODEL.BACKBONE = CN()
    _C.MODEL.BACKBONE.NAME = ""  # e.g. ViT-B/16
    _C.MODEL.BACKBONE.PRETRAINED = True
    _C.MODEL.HEAD = CN()
    _C.MODEL.HEAD.NAME = ""
    _C.MODEL.HEAD.HIDDEN_LAYERS = ()
    _C.MODEL.HEAD.ACTIVATION = "relu"
    _C.MODEL.HEAD.BN = True
    _C.MODEL.HEAD.DROPOUT = 0.0

    _C.OPTIM = CN()
    _C.OPTIM.NAME = "adam"  # sgd, adam, adamw or rmsprop
    _C.OPTIM.LR = 0.0003
    _C.OPTIM.WEIGHT_DECAY = 5e-4
    _C.OPTIM.MOMENTUM = 0.9
    _C.OPTIM.SGD_DAMPNING = 0
    _C.OPTIM.SGD_NESTEROV = False
    _C.OPTIM.RMSPROP_ALPHA = 0.99
    _C.OPTIM.ADAM_BETA1 = 0.9
    _C.OPTIM.ADAM_BETA2 = 0.999
    _C.OPTIM.STAGED_LR = False
    _C.OPTIM.NEW_LAYERS = ()
    _C.OPTIM.BASE_LR_MULT = 0.1
    _C.OPTIM.LR_SCHEDULER = "single_step"  # single_step, multi_step or cosine
    _C.OPTIM.STEPSIZE = (-1,)
    _C.OPTIM.GAMMA = 0.1
    _C.OPTIM.MAX_EPOCH = 10
    _C.OPTIM.WARMUP_EPOCH = -1  # <= 0: no warm-up
    _C.OPTIM.WARMUP_TYPE = "linear"  # constant or linear
    _C.OPTIM.WARMUP_CONS_LR = 1e-5
    _C.OPTIM.WARMUP_MIN_LR = 1e-5
    _C.OPTIM.WARMUP_RECOUNT = True

    _C.TRAIN = CN()
    _C.TRAIN.CHECKPOINT_FREQ = 0  # epochs between checkpoints; 0: only the last
    _C.TRAIN.PRINT_FREQ = 10  # iterations between log lines
    _C.TRAIN.COUNT_ITER = "train_x"
    # Not in Dassl: also save <model>/model-last.pth.tar (exact-resume state) every N iterations inside an
    # epoch; it is saved at the end of every epoch in any case. 0: only at the end of epochs.
    _C.TRAIN.LAST_CHECKPOINT_ITERS = 500

    _C.TEST = CN()
    _C.TEST.EVALUATOR = "Classification"
    _C.TEST.PER_CLASS_RESULT = False
    _C.TEST.COMPUTE_CMAT = False
    _C.TEST.NO_TEST = False
    _C.TEST.SPLIT = "test"  # test or val
    _C.TEST.FINAL_MODEL = "last_step"  # last_step or best_val

    _C.TRAINER = CN()
    _C.TRAINER.NAME = ""
    return _C


ENGINE_KEYS = ("TRAIN.LAST_CHECKPOINT_ITERS",)  # keys of this engine that Dassl's defaults lack


def get_cfg_default() -> CN:
    """A fresh, mutable copy of the default configuration."""
    return _defaults().clone()


def extend_engine_cfg(cfg: CN) -> CN:
    """Add the :data:`ENGINE_KEYS` to a config made from the real Dassl's defaults (no-op on ours)."""
    defaults = _defaults()
    for key in ENGINE_KEYS:
        node, default = cfg, defaults
        *parents, leaf = key.split(".")
        for part in parents:
            node, default = node[part], default[part]
        if leaf not in node:
            node[leaf] = default[leaf]
    return cfg


class ConfigValueError(ValueError):
    """Config values no engine can run with; the message names each key, its value and what is allowed."""


def check_cfg(cfg: CN) -> None:
    """Reject engine settings that cannot work, naming the key, the value and what is allowed.

    Called by the built-in trainer before it builds anything, and by ``train.py`` for either engine before
    it writes anything.
    """
    problems = []

    def need(ok: bool, message: str) -> None:
        if not ok:
            problems.append(message)

    need(cfg.OPTIM.LR > 0, f"OPTIM.LR={cfg.OPTIM.LR} must be > 0")
    need(cfg.OPTIM.MAX_EPOCH >= 1, f"OPTIM.MAX_EPOCH={cfg.OPTIM.MAX_EPOCH} must be >= 1")
    need(cfg.OPTIM.WEIGHT_DECAY >= 0, f"OPTIM.WEIGHT_DECAY={cfg.OPTIM.WEIGHT_DECAY} must be >= 0")
    for key in ("TRAIN_X", "TRAIN_U", "TEST"):
        size = cfg.DATALOADER[key].BATCH_SIZE
        need(size >= 1, f"DATALOADER.{key}.BATCH_SIZE={size} must be >= 1")
    need(cfg.DATALOADER.NUM_WORKERS >= 0, f"DATALOADER.NUM_WORKERS={cfg.DATALOADER.NUM_WORKERS} must be >= 0")
    need(cfg.DATALOADER.K_TRANSFORMS >= 1, f"DATALOADER.K_TRANSFORMS={cfg.DATALOADER.K_TRANSFORMS} must be >= 1")
    need(cfg.TEST.FINAL_MODEL in FINAL_MODELS,
         f"TEST.FINAL_MODEL={cfg.TEST.FINAL_MODEL!r} is not one of {list(FINAL_MODELS)}")
    need(cfg.TEST.SPLIT in TEST_SPLITS, f"TEST.SPLIT={cfg.TEST.SPLIT!r} is not one of {list(TEST_SPLITS)}")
    need(cfg.TRAIN.PRINT_FREQ >= 1, f"TRAIN.PRINT_FREQ={cfg.TRAIN.PRINT_FREQ} must be >= 1")
    need(cfg.TRAIN.CHECKPOINT_FREQ >= 0, f"TRAIN.CHECKPOINT_FREQ={cfg.TRAIN.CHECKPOINT_FREQ} must be >= 0")
    iters = cfg.TRAIN.get("LAST_CHECKPOINT_ITERS", 0)
    need(iters >= 0, f"TRAIN.LAST_CHECKPOINT_ITERS={iters} must be >= 0 (0: only at the end of epochs)")
    size = cfg.INPUT.SIZE
    need(len(size) == 2 and all(isinstance(v, int) and v >= 1 for v in size),
         f"INPUT.SIZE={tuple(size)} must be two positive integers (height, width)")
    if problems:
        raise ConfigValueError("invalid config: " + "; ".join(problems))
