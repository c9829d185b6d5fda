"""One CLIP loader for every trainer: by name (cached or downloaded) or from a local file.

Search order for a named model such as ``ViT-B/16``:
1. ``MODEL.BACKBONE.PATH`` (a weights file, or a folder holding ``ViT-B-16.pt``);
2. ``$CLIP_CACHE/ViT-B-16.pt``;
3. ``~/.cache/clip/ViT-B-16.pt`` (where ``clip.load`` downloads to);
4. a download from OpenAI into the first writable of those folders, unless ``CLIP_OFFLINE=1``.
A name that is not one of OpenAI's is taken as a file path. Files may be OpenAI's TorchScript archives or
plain state dicts (what ``torch.save(model.state_dict())`` writes), so tiny test models load the same way.
"""
from __future__ import annotations

import logging
import os
import os.path as osp
import socket
import warnings

import torch

logger = logging.getLogger(__name__)

DEFAULT_CACHE = osp.expanduser("~/.cache/clip")


class ClipWeightsNotFound(FileNotFoundError):
    """The CLIP weights are neither on disk nor downloadable."""


def clip_module():
    try:
        with warnings.catch_warnings():  # its `pkg_resources` import warns on every start
            warnings.simplefilter("ignore", UserWarning)
            import clip  # the OpenAI CLIP package (PyPI: openai-clip)
    except ImportError as e:
        raise ImportError(
            "The OpenAI CLIP package is not importable. Install the requirements: "
            "`pip install -r requirements.txt` (it needs setuptools<81 for pkg_resources)."
        ) from e
    return clip


def _known_models() -> dict[str, str]:
    return dict(clip_module().clip._MODELS)


def _candidate_dirs(path: str) -> list[str]:
    dirs = []
    if path and osp.isdir(path):
        dirs.append(path)
    if os.environ.get("CLIP_CACHE"):
        dirs.append(os.environ["CLIP_CACHE"])
    dirs.append(DEFAULT_CACHE)
    return dirs


def resolve_clip_weights(name: str, path: str = "", allow_download: bool | None = None) -> str:
    """Return the path of the weights file for backbone ``name``; raise :class:`ClipWeightsNotFound`."""
    if path and osp.isfile(path):
        return path
    if path and not osp.isdir(path):
        raise ClipWeightsNotFound(
            f"MODEL.BACKBONE.PATH={path!r} does not exist. Point it at a CLIP weights file "
            f"(e.g. ViT-B-16.pt) or a folder that holds one, or leave it empty to use the cache."
        )
    models = _known_models()
    if name not in models:
        if osp.isfile(name):
            return name
        raise ClipWeightsNotFound(
            f"Unknown CLIP backbone {name!r}: not one of {sorted(models)} and not a file. "
            "Set MODEL.BACKBONE.NAME to an OpenAI model name or MODEL.BACKBONE.PATH to a weights file."
        )
    url = models[name]
    filename = osp.basename(url)
    tried = [osp.join(d, filename) for d in _candidate_dirs(path)]
    for candidate in tried:
        if osp.isfile(candidate):
            return candidate
    if allow_download is None:
        allow_download = os.environ.get("CLIP_OFFLINE", "0") not in ("1", "true", "yes")
    download_dir = os.environ.get("CLIP_CACHE") or DEFAULT_CACHE
    hint = (
        f"CLIP weights for {name!r} not found. Looked for: {', '.join(tried)}. "
        f"Download {url} and put it at {osp.join(download_dir, filename)} "
        f"(or set CLIP_CACHE to the folder holding {filename}, or MODEL.BACKBONE.PATH to the file)."
    )
    if not allow_download:
        raise ClipWeightsNotFound(hint + " Downloading is disabled (CLIP_OFFLINE=1).")
    logger.info("Downloading %s to %s", url, download_dir)
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)
    try:
        return clip_module().clip._download(url, download_dir)
    except Exception as e:  # no network, proxy, checksum mismatch, read-only cache, ...
        partial = osp.join(download_dir, filename)
        if osp.isfile(partial):
            os.remove(partial)  # never leave a truncated file that a later run would trust
        raise ClipWeightsNotFound(hint + f" The download failed: {e}") from e
    finally:
        socket.setdefaulttimeout(old_timeout)


def read_state_dict(fpath: str) -> dict[str, torch.Tensor]:
    """State dict of a CLIP weights file: a TorchScript archive (OpenAI) or a saved state dict."""
    try:
        with open(fpath, "rb") as f, warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # jit.load: needed for OpenAI files
            return torch.jit.load(f, map_location="cpu").state_dict()
    except RuntimeError:
        pass
    try:
        obj = torch.load(fpath, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ClipWeightsNotFound(f"{fpath} is neither a TorchScript CLIP archive nor a state dict: {e}") from e
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or "token_embedding.weight" not in obj:
        raise ClipWeightsNotFound(f"{fpath} does not hold a CLIP state dict (no 'token_embedding.weight').")
    return obj


def load_clip(name: str, path: str = "", device: torch.device | str = "cpu"):
    """Build OpenAI CLIP ``name`` (or the model in ``path``) in fp32, eval mode, every weight frozen."""
    clip = clip_module()
    fpath = resolve_clip_weights(name, path)
    state_dict = read_state_dict(fpath)
    model = clip.model.build_model(dict(state_dict)).float().eval()
    # build_model casts to fp16 before loading; reload so fp32 weights (e.g. tiny models) stay exact
    model.load_state_dict({k: v for k, v in state_dict.items()
                           if k not in ("input_resolution", "context_length", "vocab_size")})
    for p in model.parameters():
        p.requires_grad_(False)
    logger.info("Loaded CLIP %s from %s", name, fpath)
    return model.to(device)


def describe_backbone(model) -> dict:
    """Shape facts of a CLIP ViT used to check head-role files and checkpoints."""
    visual = model.visual
    if not hasattr(visual, "transformer"):
        raise ValueError("Only ViT CLIP backbones are supported (got a ResNet visual encoder)")
    block = visual.transformer.resblocks[0]
    return {
        "layers": visual.transformer.layers,
        "heads": block.attn.num_heads,
        "width": visual.transformer.width,
        "text_layers": model.transformer.layers,
        "text_heads": model.transformer.resblocks[0].attn.num_heads,
        "text_width": model.transformer.width,
        "embed_dim": model.text_projection.shape[1],
        "input_resolution": visual.input_resolution,
    }
