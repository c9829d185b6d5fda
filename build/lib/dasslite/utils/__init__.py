"""Utilities with the names and behaviour CoOp-family code imports from ``dassl.utils``."""
from .logger import setup_logger
from .meters import AverageMeter, MetricMeter
from .registry import Registry
from .tools import (
    check_isfile,
    collect_env_info,
    listdir_nohidden,
    mkdir_if_missing,
    read_image,
    read_json,
    set_random_seed,
    write_json,
)
from .torchtools import (
    count_num_param,
    load_checkpoint,
    load_pretrained_weights,
    resume_from_checkpoint,
    save_checkpoint,
    tolist_if_not,
)

__all__ = [
    "AverageMeter", "MetricMeter", "Registry", "setup_logger", "check_isfile", "collect_env_info",
    "listdir_nohidden", "mkdir_if_missing", "read_image", "read_json", "set_random_seed", "write_json",
    "count_num_param", "load_checkpoint", "load_pretrained_weights", "resume_from_checkpoint",
    "save_checkpoint", "tolist_if_not",
]
