"""Pieces every CLIP trainer of this project shares: weight loading, templates, text encoding, precision."""
from .loader import ClipWeightsNotFound, load_clip, resolve_clip_weights
from .templates import CUSTOM_TEMPLATES, template_for

__all__ = ["ClipWeightsNotFound", "load_clip", "resolve_clip_weights", "CUSTOM_TEMPLATES", "template_for"]
