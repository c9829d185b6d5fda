"""Trainers, registered in Dassl's ``TRAINER_REGISTRY`` on import."""
import dasslite

dasslite.use_dassl()

from . import dear, zsclip  # noqa: E402,F401
from .config import extend_cfg  # noqa: E402

__all__ = ["extend_cfg"]
