"""Trainers, registered in Dassl's ``TRAINER_REGISTRY`` on import; their config nodes in ``extend_cfg``."""
import dasslite

dasslite.use_dassl()

from clipkit.config import extend_cfg  # noqa: E402

from . import cocoop, coop, dear, ivlp, maple, mmrl, mmrlpp, promptsrc, zsclip  # noqa: E402,F401

__all__ = ["extend_cfg"]
