"""Pretrain a tiny CLIP contrastively on the world's image-caption pairs (CPU, a few minutes), bit for bit
reproducibly (``clipkit.determinism.pin_numerics``).

    python -m tools.pretrain_world_clip --out output/world/tiny_world_clip.pt [--steps 600] [--batch 128]
    python -m tools.pretrain_world_clip --chain --out X.pt   # the shipped CLIP, bit for bit (SHIPPED_CHAIN)

The model is OpenAI's ``clip.model.CLIP`` (``ARCH``): a 6-layer ViT of width 128 with 8 heads (16 dimensions
each) at patch 8 on 32 px images (16 patches), and a 4-layer text transformer of width 64 (4 heads, context
32). Token embeddings of words that no caption uses are zero from the start and stay zero, so the file stores
the embedding's used rows only (a row-sparse tensor; about 6 MB in all). The file is a plain state dict with
the head counts as reserved integer entries, which ``clipkit.load_clip`` reads like OpenAI's weights. An
existing file with the same settings is reused.

Knobs (all stored in ``<out>.json`` with the result): ``--steps``, ``--batch``, ``--images``, ``--lr``,
``--caption-noise`` (probability that a caption names an attribute wrongly), ``--mention`` (probability
that a caption names a given attribute), ``--variety`` (probability that a caption words something otherwise
than the prompts do) and ``--positives`` (CLIP's one-positive targets or caption-aware ones), besides the
world's own ``tools.world.NUISANCE``. For calibration studies: ``--init`` (start from a world CLIP made before,
recorded by its digest; ``lineage`` lists the chain it continues, root first, each one's settings and digest),
``--text-lr-mult`` (the text tower's learning rate as a multiple of ``--lr``; 0 freezes it) and ``--hard`` (what
the images of a hard batch share, e.g. ``color,color+position``: in turn, one batch sharing the colour, the next
sharing colour and position); ``<out>.json`` names them only when they differ from the defaults, so files made
before they existed stay valid.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import os.path as osp
import random
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from clipkit.determinism import pin_numerics, state_digest
from clipkit.loader import clip_state_dict
from clipkit.surgery import TextTower
from clipkit.text import tokenize
from clipkit.tiny import build_clip
from head_roles.discover import CLIP_MEAN, CLIP_STD
from tools.world import ATTRIBUTES, CAPTION_NOISE, MENTION, VALUES, VARIETY, pretraining_set, render

MEAN = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
ARCH = dict(embed_dim=256, image_resolution=32, vision_layers=6, vision_width=128, vision_heads=8,
            vision_patch_size=8, context_length=32, transformer_width=64, text_heads=4, transformer_layers=4)
# the schedule and caption knobs the shipped model was made with (the command line's defaults)
DEFAULTS = dict(steps=2400, batch=64, n_images=20000, lr=1e-3, seed=0, caption_noise=CAPTION_NOISE, mention=MENTION,
                variety=VARIETY, positives="caption")
# which pairs of a batch are positives: "index" (CLIP's InfoNCE: image i with caption i only) or "caption" (also
# every other image whose caption is the same token sequence, as soft targets): with 10 colours, a batch of 64
# holds about 6 images that a colour caption describes equally well, and "index" calls 5 of them negatives
POSITIVES = ("index", "caption")
# every HARD_EVERY-th batch is a hard one: its images share the values of one of HARD_GROUPS in turn (here:
# their colour, the cue learnt first, which otherwise crowds out the others; ``--hard`` changes them); 0: no hard
# batches
HARD_EVERY = 2
HARD_GROUPS = (("color",),)
SHIPPED = "tools/data/tiny_world_clip.pt"  # made by `python -m tools.pretrain_world_clip --chain --out <it>`, ~6 MB
# The shipped CLIP's recipe (``--chain``): a root made with the defaults, then continuations of the same length,
# each from the one before (``--init``): two with the text tower frozen (the image tower learns texture and shape
# against the root's words), one with it at 0.03 x the image tower's rate (its words then separate a little).
# Chosen on zero-shot CLIP and CoOp only (README, "Calibration").
SHIPPED_CHAIN = ({}, {"text_lr_mult": 0.0}, {"text_lr_mult": 0.0}, {"text_lr_mult": 0.03})
# the text tower's parameters (``--text-lr-mult``): everything ``encode_text`` uses besides the shared temperature
TEXT_PARAMS = ("transformer.", "token_embedding.", "positional_embedding", "ln_final.", "text_projection")
# zero-shot probe of each attribute: "<template>" per value, on fresh images whose other attributes vary
PROBE_TEMPLATES = {"color": "a photo of a {} object", "texture": "{} texture", "shape": "a photo of a {}",
                   "position": "a photo of an object in the {}"}


def to_input(images_uint8: np.ndarray) -> torch.Tensor:
    """``[n, H, W, 3]`` uint8 -> ``[n, 3, H, W]`` CLIP-normalised floats."""
    x = torch.from_numpy(images_uint8).permute(0, 3, 1, 2).float() / 255.0
    return (x - MEAN) / STD


@torch.no_grad()
def attribute_probe(model, n: int = 400, seed: int = 123) -> dict[str, float]:
    """Zero-shot accuracy (%) of each attribute on ``n`` fresh images, e.g. "a photo of a red object" against
    the other colours, every other attribute drawn at random (chance: 10, 12.5, 10, 11.1)."""
    rng, prng = np.random.default_rng(seed), random.Random(seed)
    truth = [[prng.randrange(len(VALUES[a])) for a in ATTRIBUTES] for _ in range(n)]
    imgs = np.stack([render(*(VALUES[a][j] for a, j in zip(ATTRIBUTES, t)), rng)[0] for t in truth])
    f = F.normalize(model.encode_image(to_input(imgs)), dim=-1)
    tower = TextTower(model)
    out = {}
    for i, a in enumerate(ATTRIBUTES):
        tokens = tokenize([PROBE_TEMPLATES[a].format(v) for v in VALUES[a]], model.context_length)
        t = F.normalize(tower(tokens[:, : int(tokens.argmax(-1).max()) + 1]), dim=-1)
        pred = (f @ t.t()).argmax(-1)
        out[a] = round((pred == torch.tensor([x[i] for x in truth])).float().mean().item() * 100, 2)
    return out


def format_hard(groups: tuple[tuple[str, ...], ...]) -> str:
    """``(("color",), ("color", "position"))`` -> ``"color,color+position"`` (``--hard``'s form)."""
    return ",".join("+".join(g) for g in groups)


def parse_hard(text: str) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(a.strip() for a in g.split("+")) for g in text.split(","))


def hard_pools(attrs: np.ndarray, shared: tuple[str, ...]) -> list[torch.Tensor]:
    """Hard negatives: the indices of the images (``attrs``: ``[n, 4]`` value indices) grouped by their values of
    the ``shared`` attributes; a hard batch is drawn from one pool, so the other attributes must be read."""
    cols = [ATTRIBUTES.index(a) for a in shared]
    keys, inverse = np.unique(attrs[:, cols], axis=0, return_inverse=True)
    return [torch.from_numpy(np.flatnonzero(inverse.ravel() == k)) for k in range(len(keys))]


def default_settings() -> dict:
    """What ``<out>.json`` records as ``settings`` for a run with the defaults (numerics aside)."""
    return dict(ARCH, **DEFAULTS)


def pretrain(out: str, steps: int = DEFAULTS["steps"], batch: int = DEFAULTS["batch"],
             n_images: int = DEFAULTS["n_images"], lr: float = DEFAULTS["lr"], seed: int = DEFAULTS["seed"],
             caption_noise: float = CAPTION_NOISE, mention: float = MENTION, numerics: dict | None = None,
             probe: bool = True, positives: str = DEFAULTS["positives"], variety: float = VARIETY,
             init: str = "", text_lr_mult: float = 1.0, hard: tuple[tuple[str, ...], ...] = HARD_GROUPS) -> dict:
    """Train, save ``out`` (state dict) and ``out.json`` (settings, result, digest); reuse them if present."""
    settings = dict(ARCH, steps=steps, batch=batch, n_images=n_images, lr=lr, seed=seed,
                    caption_noise=caption_noise, mention=mention, variety=variety, positives=positives,
                    numerics=numerics or {})
    if positives not in POSITIVES:
        raise ValueError(f"positives must be one of {POSITIVES}, got {positives!r}")
    if not (math.isfinite(text_lr_mult) and text_lr_mult >= 0):
        raise ValueError(f"text_lr_mult must be a finite number >= 0 (0 freezes the text tower), got {text_lr_mult}")
    lineage: list = []
    if init:
        if not (osp.isfile(init) and osp.isfile(init + ".json")):
            raise FileNotFoundError(f"--init {init}: no such world CLIP (or no {init}.json beside it); give a file "
                                    "written by python -m tools.pretrain_world_clip")
        with open(init + ".json") as f:
            init_meta = json.load(f)
        settings["init"] = init_meta["sha256"]
        # the chain of CLIPs this one continues, root first: each one's settings and digest, so that the file's
        # record alone says how to make it again from nothing
        lineage = init_meta.get("lineage", []) + [{"settings": init_meta["settings"], "sha256": init_meta["sha256"]}]
    if text_lr_mult != 1.0:
        settings["text_lr_mult"] = text_lr_mult
    hard = tuple(tuple(g) for g in hard)
    if not hard or any(not g or set(g) - set(ATTRIBUTES) or len(set(g)) < len(g) for g in hard):
        raise ValueError(f"hard batch groups {format_hard(hard)!r}: each group names distinct attributes of "
                         f"{', '.join(ATTRIBUTES)} joined by '+', groups separated by ',' (e.g. color,color+position)")
    if hard != HARD_GROUPS:
        settings["hard"] = format_hard(hard)
    meta_path = out + ".json"
    if osp.exists(out) and osp.exists(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
        if meta.get("settings") == json.loads(json.dumps(settings)):
            print(f"Reusing {out}")
            return meta
    torch.manual_seed(seed)
    t0 = time.time()
    images, captions, attrs = pretraining_set(n_images, seed=seed + 1, noise=caption_noise, mention=mention,
                                             variety=variety)
    # one token tensor per caption focus ([n, context] each): every step contrasts the batch with each
    tokens = [tokenize([caps[k] for caps in captions], ARCH["context_length"]) for k in range(len(ATTRIBUTES))]
    groups = [hard_pools(attrs, shared) for shared in hard]
    model = build_clip(seed=seed, **ARCH).train()
    if init:
        from clipkit.loader import load_clip

        start = load_clip("unused", init).float()
        if state_digest(clip_state_dict(start)) != settings["init"]:
            raise ValueError(f"--init {init}: its weights do not match the digest in {init}.json (a changed file)")
        model.load_state_dict(start.state_dict())
    with torch.no_grad():  # the world's vocabulary: other words embed to zero (and get no gradient); a start
        # from --init keeps its own rows
        unseen = torch.ones(model.token_embedding.weight.shape[0], dtype=torch.bool)
        unseen[torch.unique(torch.cat(tokens))] = False
        if not init:
            model.token_embedding.weight[unseen] = 0
    text_tower = TextTower(model)  # encode_text with variable length (shares the weights)
    # weight decay on matrices only (as CLIP): not on gains, biases, embeddings or the temperature; with
    # --text-lr-mult the text tower's parameters form their own groups at lr x text_lr_mult (0: frozen, no
    # gradient computed)
    named = list(model.named_parameters())
    if text_lr_mult == 1.0:
        towers = [(named, lr)]
    else:
        text = [(n, p) for n, p in named if n.startswith(TEXT_PARAMS)]
        towers = [([(n, p) for n, p in named if not n.startswith(TEXT_PARAMS)], lr), (text, lr * text_lr_mult)]
        if text_lr_mult == 0:
            for _, p in towers.pop()[0]:
                p.requires_grad_(False)
    param_groups = []
    for params, tower_lr in towers:
        decayed = [p.dim() >= 2 and "embedding" not in n for n, p in params]
        for keep, wd in ((True, 0.05), (False, 0.0)):
            ps = [p for (_, p), d in zip(params, decayed) if d == keep]
            param_groups.append({"params": ps, "weight_decay": wd, "lr": tower_lr})
    opt = torch.optim.AdamW(param_groups, lr=lr)
    warmup = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    g = torch.Generator().manual_seed(seed)
    bar = tqdm(range(steps), desc="pretrain tiny CLIP", unit="step")
    loss = torch.zeros(())
    labels = torch.arange(batch)
    for step in bar:
        if HARD_EVERY and step % HARD_EVERY == HARD_EVERY - 1:
            pools = groups[(step // HARD_EVERY) % len(groups)]
            pool = pools[int(torch.randint(0, len(pools), (1,), generator=g))]
            idx = pool[torch.randint(0, len(pool), (batch,), generator=g)]
        else:
            idx = torch.randint(0, n_images, (batch,), generator=g)
        fi = F.normalize(model.encode_image(to_input(images[idx.numpy()])), dim=-1)
        scale = model.logit_scale.exp().clamp(max=100)
        losses = []
        for tok in tokens:  # symmetric InfoNCE against each caption set
            txt = tok[idx]
            txt = txt[:, : int(txt.argmax(dim=-1).max()) + 1]  # drop padding after the last end-of-text (exact)
            logits = scale * fi @ F.normalize(text_tower(txt), dim=-1).t()
            target = labels
            if positives == "caption":  # rows of equal captions share the target mass (symmetric, so one target)
                same = (txt[:, None, :] == txt[None, :, :]).all(-1).to(logits.dtype)
                target = same / same.sum(1, keepdim=True)
            losses.append((F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2)
        loss = torch.stack(losses).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 25 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    seconds = round(time.time() - t0, 1)
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    torch.save(clip_state_dict(model, sparse_rows=("token_embedding.weight",)), out + ".tmp")
    os.replace(out + ".tmp", out)
    meta = {"settings": settings, "final_loss": round(loss.item(), 6), "seconds": seconds,
            "sha256": state_digest(clip_state_dict(model))}
    if lineage:
        meta["lineage"] = lineage
    if probe:
        meta["attribute_zero_shot_accuracy"] = attribute_probe(model)
    with open(meta_path, "w") as f:
        json.dump(meta, f, indent=2)
    print(f"Saved {out}: loss {meta['final_loss']:.3f}, {seconds} s, digest {meta['sha256'][:16]}, "
          f"attribute zero-shot {meta.get('attribute_zero_shot_accuracy')}")
    return meta


def chain_paths(out: str, n: int) -> list[str]:
    """Where ``pretrain_chain`` writes its stages: ``<out minus .pt>.stage<k>.pt`` for all but the last, which
    is ``out``."""
    stem = out[:-3] if out.endswith(".pt") else out
    return [f"{stem}.stage{k + 1}.pt" for k in range(n - 1)] + [out]


def pretrain_chain(out: str, chain: tuple[dict, ...] = SHIPPED_CHAIN, probe: bool = True, **kw) -> dict:
    """The stages of ``chain`` in turn, each ``pretrain(**kw, **stage)`` from the one before (the first from
    random weights), the last written to ``out``; every stage is cached by its settings, so an interrupted chain
    resumes. With the defaults: the shipped CLIP, bit for bit."""
    if kw.pop("init", ""):
        raise ValueError("a chain starts from random weights: give --init or --chain, not both")
    per_stage = sorted(set(kw) & {key for stage in chain for key in stage})
    if per_stage:
        raise ValueError(f"the chain sets {', '.join(per_stage)} per stage: give it in the chain, not for all")
    init, meta = "", {}
    paths = chain_paths(out, len(chain))
    for k, (path, stage) in enumerate(zip(paths, chain)):
        print(f"chain stage {k + 1}/{len(chain)}: {path} {stage or '(the defaults)'}")
        meta = pretrain(path, **dict(kw, **stage), init=init, probe=probe and k == len(chain) - 1)
        init = path
    return meta


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="output/world/tiny_world_clip.pt")
    p.add_argument("--steps", type=int, default=DEFAULTS["steps"])
    p.add_argument("--batch", type=int, default=DEFAULTS["batch"])
    p.add_argument("--images", type=int, default=DEFAULTS["n_images"])
    p.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    p.add_argument("--caption-noise", type=float, default=CAPTION_NOISE)
    p.add_argument("--mention", type=float, default=MENTION)
    p.add_argument("--variety", type=float, default=VARIETY)
    p.add_argument("--positives", choices=POSITIVES, default=DEFAULTS["positives"])
    p.add_argument("--init", default="", help="start from this world CLIP (made by this tool) instead of random")
    p.add_argument("--text-lr-mult", type=float, default=1.0, help="text tower's lr / --lr (0: frozen)")
    p.add_argument("--hard", default=format_hard(HARD_GROUPS),
                   help="what a hard batch's images share, in turn, e.g. color,color+position")
    p.add_argument("--chain", action="store_true", help="the shipped recipe (SHIPPED_CHAIN): a root, then its "
                   "continuations, each --steps long, the last written to --out (the others beside it)")
    p.add_argument("--no-probe", action="store_true", help="skip the attribute probe (digest checks)")
    args = p.parse_args()
    if args.chain and (args.init or args.text_lr_mult != 1.0):
        p.error("--chain sets --init and --text-lr-mult per stage (SHIPPED_CHAIN): give neither with it")
    numerics = pin_numerics()  # before any tensor is computed
    kw = dict(steps=args.steps, batch=args.batch, n_images=args.images, lr=args.lr, seed=args.seed,
              caption_noise=args.caption_noise, mention=args.mention, numerics=numerics, probe=not args.no_probe,
              positives=args.positives, variety=args.variety, hard=parse_hard(args.hard))
    try:
        if args.chain:
            pretrain_chain(args.out, **kw)
        else:
            pretrain(args.out, init=args.init, text_lr_mult=args.text_lr_mult, **kw)
    except (ValueError, FileNotFoundError) as e:
        p.error(str(e))


if __name__ == "__main__":
    main()
