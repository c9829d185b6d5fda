"""Pictures of a trained DeAR run: head-role map, fusion weights heatmap, attribute-conditioned retrieval.

    python -m tools.figures --runs output/world/base2new/train_base/world_mixed/shots_16/DeAR/dear \\
        --clip output/world/tiny_world_clip.pt --roles output/world/tiny_world_roles.json \\
        --images output/world/data/world_mixed --out output/world/figures [--config configs/dear.yaml KEY VALUE ...]
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import os.path as osp

import numpy as np
import torch

# per attribute token: the query text and, for the built-in world, the attribute value that makes an image a hit
RETRIEVAL_QUERIES = {"color": ("something red", "color", "red"), "shape": ("a circle", "shape", "circle"),
                     "texture": ("a striped pattern", "texture", "striped"),
                     "object": ("a triangle", "shape", "triangle"),
                     "location": ("something in the top left", "position", "top left")}


def fusion_heatmap(rows: dict[str, list[float]], paths: list[str], out: str) -> None:
    """Rows (runs or data sets) x paths ([CLS] and the attributes), coloured by alpha."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = np.array(list(rows.values()))
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(paths), 0.9 + 0.45 * len(rows)))
    im = ax.imshow(data, cmap="Blues", vmin=0, vmax=max(0.01, float(data.max())))
    ax.set_xticks(range(len(paths)), paths)
    ax.set_yticks(range(len(rows)), list(rows))
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            ax.text(j, i, f"{data[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if data[i, j] > 0.6 * data.max() else "black")
    ax.set_title("Learned fusion weights alpha")
    fig.colorbar(im, ax=ax, fraction=0.03)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def retrieval(model, images: torch.Tensor, queries: dict[str, tuple[str, str, str]], top: int = 8,
              truth: list[dict[str, str]] | None = None) -> dict:
    """For each attribute token, the ``top`` images whose attribute feature is closest to its query's text feature.

    With ``truth`` (each image's attribute values, as the world writes them) every pick is a hit or a miss, and
    precision@k is reported per token next to its chance (the share of hits in the pool).
    Returns ``{token: {"picks": [...], "hits": [...] | None, "precision_at_k": p | None, "chance": c | None}}``.
    """
    attrs = list(model.learner.attributes)
    with torch.no_grad():
        feats = model.image_features(images)["f_attr"]  # [N, K, E]
        model.set_classes([queries[a][0] for a in attrs], "{}")
        text = model.text_features()  # [K, E]
    result = {}
    for k, a in enumerate(attrs):
        _, attribute, value = queries[a]
        idx = (feats[:, k] @ text[k]).topk(min(top, len(images))).indices.tolist()
        hits = [truth[i].get(attribute) == value for i in idx] if truth is not None else None
        result[a] = {"picks": idx, "hits": hits,
                     "precision_at_k": sum(hits) / len(idx) if hits else None,
                     "chance": sum(t.get(attribute) == value for t in truth) / len(truth) if truth else None}
    return result


def retrieval_figure(images: torch.Tensor, found: dict, queries: dict[str, tuple[str, str, str]]):
    """One row per token: its picks, framed green (hit) or red (miss) when known, titled with precision@k."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from head_roles.discover import CLIP_MEAN, CLIP_STD

    top = max(len(r["picks"]) for r in found.values())
    fig, axes = plt.subplots(len(found), top, figsize=(1.1 * top, 1.35 * len(found)), squeeze=False)
    mean, std = torch.tensor(CLIP_MEAN).view(3, 1, 1), torch.tensor(CLIP_STD).view(3, 1, 1)
    for k, (a, r) in enumerate(found.items()):
        for j in range(top):
            ax = axes[k, j]
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if j < len(r["picks"]):
                img = (images[r["picks"][j]].cpu() * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()
                ax.imshow(img, interpolation="nearest")
                if r["hits"] is not None:
                    ax.add_patch(Rectangle((0, 0), 1, 1, transform=ax.transAxes, fill=False, clip_on=False,
                                           lw=3, edgecolor="#2CA02C" if r["hits"][j] else "#D62728"))
        score = "" if r["precision_at_k"] is None else \
            f"   P@{len(r['picks'])} = {r['precision_at_k']:.2f} (chance {r['chance']:.2f})"
        axes[k, 0].set_title(f'{a} token: "{queries[a][0]}"{score}', fontsize=8, loc="left")
    if any(r["hits"] is not None for r in found.values()):
        fig.suptitle("green frame: the image has the queried value; red: it does not", fontsize=8)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> None:
    import matplotlib.pyplot as plt

    import dasslite

    dasslite.use_dassl()
    from dassl.data.transforms import build_transform
    from dassl.utils import read_image

    from clipkit import load_clip
    from clipkit.config import load_config
    from clipkit.trainer import load_learner
    from head_roles import load_roles
    from head_roles.discover import plot_roles
    from tools.world import ATTRIBUTES_FILE
    from trainers.dear import DeAR

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", required=True,
                   help="DeAR run folders (holding prompt_learner/) or parents of seed*/")
    p.add_argument("--clip", required=True)
    p.add_argument("--roles", required=True)
    p.add_argument("--images", required=True, help="data set folder with split_zhou_*.json (test images used)")
    p.add_argument("--out", required=True)
    p.add_argument("--config", default="configs/dear.yaml")
    p.add_argument("opts", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)

    roles = load_roles(args.roles)
    plot_roles(roles, osp.join(args.out, "head_roles.png"))

    cfg = load_config(args.config, opts=["MODEL.BACKBONE.PATH", args.clip, "TRAINER.DEAR.ROLES_FILE", args.roles]
                      + args.opts)
    clip_model = load_clip(cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.PATH)
    model = DeAR.make_model(cfg, clip_model).eval()

    runs = []
    for r in args.runs:
        runs += sorted(glob.glob(osp.join(r, "seed*"))) if not osp.isdir(osp.join(r, "prompt_learner")) else [r]
    rows = {}
    for run in runs:
        ckpts = sorted(glob.glob(osp.join(run, "prompt_learner", "model.pth.tar-*")),
                       key=lambda f: int(f.rsplit("-", 1)[1]))
        if not ckpts:
            continue
        load_learner(model.learner, ckpts[-1])
        parts = run.rstrip("/").split(osp.sep)
        # .../<dataset>/shots_<K>/<trainer>/<config>/seed<S>
        rows[f"{parts[-5] if len(parts) >= 5 else run} {parts[-1]}"] = model.learner.alpha.tolist()
    if not rows:
        raise SystemExit(f"no DeAR checkpoints under {args.runs}")
    paths = ["[CLS]"] + list(model.learner.attributes)
    fusion_heatmap(rows, paths, osp.join(args.out, "fusion_weights.png"))

    split = glob.glob(osp.join(args.images, "split_zhou_*.json"))[0]
    with open(split) as f:
        test = json.load(f)["test"]
    tfm = build_transform(cfg, is_train=False)
    images = torch.stack([tfm(read_image(osp.join(args.images, "images", rel))) for rel, _, _ in test])
    truth = None
    attrs_path = osp.join(args.images, ATTRIBUTES_FILE)  # the world's ground truth; other data sets have none
    if osp.isfile(attrs_path):
        with open(attrs_path) as f:
            by_image = json.load(f)
        truth = [by_image[rel] for rel, _, _ in test]
    found = retrieval(model, images, RETRIEVAL_QUERIES, truth=truth)
    fig = retrieval_figure(images, found, RETRIEVAL_QUERIES)
    fig.savefig(osp.join(args.out, "attribute_retrieval.png"), dpi=120)
    plt.close(fig)
    summary = {a: {"top_classes": [test[i][2] for i in r["picks"]], "precision_at_k": r["precision_at_k"],
                   "chance": r["chance"]} for a, r in found.items()}
    with open(osp.join(args.out, "attribute_retrieval.json"), "w") as f:
        json.dump({"queries": RETRIEVAL_QUERIES, "retrieval": summary, "fusion_weights": rows}, f, indent=2)
    for a, r in summary.items():
        if r["precision_at_k"] is not None:
            print(f"retrieval {a:9s} precision@{len(r['top_classes'])} {r['precision_at_k']:.2f} "
                  f"(chance {r['chance']:.2f})")
    print(f"wrote {args.out}/head_roles.png, fusion_weights.png, attribute_retrieval.png")


if __name__ == "__main__":
    main()
