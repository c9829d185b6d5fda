"""Image transforms by name (``dassl.data.transforms``)."""
from .transforms import INTERPOLATION_MODES, SUPPORTED_TRANSFORMS, build_transform

__all__ = ["build_transform", "INTERPOLATION_MODES", "SUPPORTED_TRANSFORMS"]
