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


# Reserved state-dict entries: integer tensors that carry what the weights' shapes cannot tell (the head
# counts: OpenAI's ``build_model`` assumes 64-dim heads). A file stays a plain, ``weights_only``-loadable state
# dict; the entries are taken out before ``load_state_dict``. OpenAI's files have none and load as before.
META_PREFIX = "clipkit."
HEAD_KEYS = {"vision_heads": META_PREFIX + "vision_heads", "text_heads": META_PREFIX + "text_heads"}
# Non-parameter entries of OpenAI's TorchScript archives, dropped as ``build_model`` drops them
_ARCHIVE_EXTRAS = ("input_resolution", "context_length", "vocab_size")


class ClipWeightsInvalid(ValueError):
    """A CLIP weights file whose tensors do not make a consistent CLIP (missing, mis-shaped or extra ones)."""


def read_state_dict(fpath: str) -> dict[str, torch.Tensor]:
    """State dict of a CLIP weights file: a TorchScript archive (OpenAI) or a saved state dict.

    Reserved ``clipkit.*`` entries (e.g. head counts written by :func:`clip_state_dict`) are kept; see
    :func:`split_meta`."""
    try:
        with open(fpath, "rb") as f, warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # jit.load: needed for OpenAI files
            return torch.jit.load(f, map_location="cpu").state_dict()
    except RuntimeError:
        pass
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "(Validating )?[Ss]parse", UserWarning)  # row-sparse entries
            obj = torch.load(fpath, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ClipWeightsNotFound(f"{fpath} is neither a TorchScript CLIP archive nor a state dict: {e}") from e
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or "token_embedding.weight" not in obj:
        raise ClipWeightsNotFound(f"{fpath} does not hold a CLIP state dict (no 'token_embedding.weight').")
    return obj


def split_meta(state_dict: dict[str, torch.Tensor],
               fpath: str = "<state dict>") -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """``(weights, meta)``: the tensors to load and the reserved ``clipkit.*`` integers (names without prefix)."""
    weights = {k: v for k, v in state_dict.items() if not k.startswith(META_PREFIX)}
    meta = {}
    for key, value in state_dict.items():
        if not key.startswith(META_PREFIX):
            continue
        if key not in HEAD_KEYS.values():
            raise ClipWeightsInvalid(f"{fpath}: unknown reserved entry {key!r}; known: {sorted(HEAD_KEYS.values())}")
        if not isinstance(value, torch.Tensor) or value.numel() != 1 or value.is_floating_point():
            raise ClipWeightsInvalid(f"{fpath}: {key!r} must be a one-element integer tensor, got {value!r}")
        meta[key[len(META_PREFIX):]] = int(value)
    return weights, meta


def clip_state_dict(model, sparse_rows: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` plus its head counts as reserved integer entries (what :func:`load_clip` reads).

    Tensors named in ``sparse_rows`` are stored as row-sparse COO tensors holding their non-zero rows only
    (e.g. the token embedding of a model that saw a small vocabulary); the loader makes them dense again."""
    sd = dict(model.state_dict())
    for key in sparse_rows:
        sd[key] = sd[key].to_sparse(sparse_dim=1).coalesce()
    sd[HEAD_KEYS["vision_heads"]] = torch.tensor(model.visual.transformer.resblocks[0].attn.num_heads)
    sd[HEAD_KEYS["text_heads"]] = torch.tensor(model.transformer.resblocks[0].attn.num_heads)
    return sd


def check_heads(width: int, heads: int, what: str, min_width: int = 1) -> None:
    """Raise :class:`ClipWeightsInvalid` unless ``heads`` split ``width``. ``clip.model.CLIP`` builds its ViT with
    ``width // 64`` heads before ours are set, so vision widths below 64 are refused (``min_width=64``)."""
    if width < min_width:
        raise ClipWeightsInvalid(f"{what}: width {width} < {min_width}; clip.model.CLIP builds a ViT with "
                                 "width // 64 heads before the head count is set")
    if heads < 1 or width % heads:
        raise ClipWeightsInvalid(f"{what}: {heads} heads do not divide the width {width}")


def set_heads(transformer, heads: int, what: str = "transformer") -> None:
    """Give every attention layer of a CLIP ``Transformer`` ``heads`` heads. Weights are shaped by the width
    alone, so only the split of Q/K/V into heads changes (and a model's initial weights do not depend on it)."""
    check_heads(transformer.width, heads, what)
    for block in transformer.resblocks:
        block.attn.num_heads = heads
        block.attn.head_dim = transformer.width // heads


def _need(state_dict: dict, key: str, fpath: str, what: str, ndim: int) -> torch.Tensor:
    t = state_dict.get(key)
    if t is None:
        raise ClipWeightsInvalid(f"{fpath}: the CLIP tensor {key!r} ({what}) is missing")
    if t.dim() != ndim:
        raise ClipWeightsInvalid(f"{fpath}: {key!r} ({what}) has shape {tuple(t.shape)}; "
                                 f"expected a {ndim}-dimensional tensor")
    return t


def clip_config(state_dict: dict[str, torch.Tensor], meta: dict[str, int], fpath: str) -> dict:
    """The ``clip.model.CLIP`` arguments of a state dict, read off its shapes as OpenAI's ``build_model`` does,
    plus ``vision_heads``; head counts come from ``meta`` (default ``width // 64``, ``build_model``'s rule)."""
    text_width = _need(state_dict, "ln_final.weight", fpath, "[text width]", 1).shape[0]
    cfg = dict(
        embed_dim=_need(state_dict, "text_projection", fpath, "[text width, embed dim]", 2).shape[1],
        context_length=_need(state_dict, "positional_embedding", fpath, "[context, text width]", 2).shape[0],
        vocab_size=_need(state_dict, "token_embedding.weight", fpath, "[vocab, text width]", 2).shape[0],
        transformer_width=text_width,
        transformer_heads=meta.get("text_heads", text_width // 64),
        transformer_layers=len({k.split(".")[2] for k in state_dict if k.startswith("transformer.resblocks.")}),
    )
    if "visual.proj" in state_dict or any(k.startswith("visual.transformer.") for k in state_dict):  # ViT
        conv = _need(state_dict, "visual.conv1.weight", fpath, "patch embedding [width, 3, patch, patch]", 4)
        pos = _need(state_dict, "visual.positional_embedding", fpath, "[1 + grid * grid, width]", 2)
        grid = round((pos.shape[0] - 1) ** 0.5)
        if grid * grid + 1 != pos.shape[0]:
            raise ClipWeightsInvalid(f"{fpath}: 'visual.positional_embedding' has {pos.shape[0]} rows; expected "
                                     "1 + grid * grid (a [CLS] row and a square grid of patches)")
        cfg.update(image_resolution=conv.shape[-1] * grid, vision_width=conv.shape[0],
                   vision_patch_size=conv.shape[-1], vision_heads=meta.get("vision_heads", conv.shape[0] // 64),
                   vision_layers=len([k for k in state_dict
                                      if k.startswith("visual.") and k.endswith(".attn.in_proj_weight")]))
    else:  # ResNet (OpenAI's RN50, ...): no head counts of ours
        if "vision_heads" in meta:
            raise ClipWeightsInvalid(f"{fpath}: {HEAD_KEYS['vision_heads']} is only supported for ViT backbones")
        pos = _need(state_dict, "visual.attnpool.positional_embedding", fpath, "[1 + grid * grid, width]", 2)
        grid = round((pos.shape[0] - 1) ** 0.5)
        cfg.update(image_resolution=grid * 32, vision_patch_size=None,
                   vision_width=_need(state_dict, "visual.layer1.0.conv1.weight", fpath, "ResNet stem", 4).shape[0],
                   vision_layers=tuple(len({k.split(".")[2] for k in state_dict if k.startswith(f"visual.layer{b}.")})
                                       for b in (1, 2, 3, 4)))
    return cfg


def check_state_dict(model, state_dict: dict[str, torch.Tensor], fpath: str) -> None:
    """Raise :class:`ClipWeightsInvalid` naming the file and every missing, mis-shaped or unexpected tensor."""
    expected = model.state_dict()
    problems = [f"missing {k!r} (expected shape {tuple(v.shape)})" for k, v in expected.items() if k not in state_dict]
    problems += [f"{k!r} has shape {tuple(state_dict[k].shape)}, expected {tuple(v.shape)}"
                 for k, v in expected.items() if k in state_dict and state_dict[k].shape != v.shape]
    problems += [f"unexpected tensor {k!r}" for k in state_dict if k not in expected]
    if problems:
        shown = "; ".join(problems[:8]) + (f"; and {len(problems) - 8} more" if len(problems) > 8 else "")
        raise ClipWeightsInvalid(f"{fpath} is not a consistent CLIP state dict: {shown}")


def build_clip_model(state_dict: dict[str, torch.Tensor], fpath: str = "<state dict>"):
    """An fp32 ``clip.model.CLIP`` holding ``state_dict`` (reserved entries give the head counts).

    Built as OpenAI's ``build_model`` builds it, but every tensor is checked first, so a bad file fails with
    its name and the tensor, never with a bare ``size mismatch``."""
    clip = clip_module()
    weights, meta = split_meta(state_dict, fpath)
    weights = {k: (v.to_dense() if v.is_sparse else v) for k, v in weights.items() if k not in _ARCHIVE_EXTRAS}
    cfg = clip_config(weights, meta, fpath)
    vision_heads = cfg.pop("vision_heads", None)
    check_heads(cfg["transformer_width"], cfg["transformer_heads"], f"{fpath}: text heads")
    if vision_heads is not None:
        check_heads(cfg["vision_width"], vision_heads, f"{fpath}: vision heads", min_width=64)
    model = clip.model.CLIP(**cfg).float()
    if vision_heads is not None:
        set_heads(model.visual.transformer, vision_heads, f"{fpath}: {HEAD_KEYS['vision_heads']}")
    set_heads(model.transformer, cfg["transformer_heads"], f"{fpath}: {HEAD_KEYS['text_heads']}")
    check_state_dict(model, weights, fpath)
    model.load_state_dict(weights)  # fp16 tensors (OpenAI's files) are cast to the fp32 parameters
    return model.eval()


def load_clip(name: str, path: str = "", device: torch.device | str = "cpu"):
    """Build OpenAI CLIP ``name`` (or the model in ``path``) in fp32, eval mode, every weight frozen."""
    fpath = resolve_clip_weights(name, path)
    model = build_clip_model(read_state_dict(fpath), fpath)
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
