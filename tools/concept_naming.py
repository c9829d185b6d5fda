"""How well Concept Entropy's naming stage (SBERT + HDBSCAN, clusters named by their nearest seed centroid) names
texts whose concept is known by construction: the world's corpus, the texts a roles file's heads picked from it,
and the project's generic corpus. Prints the share named right for each cluster selection and set of seeds.

    python -m tools.concept_naming [--roles output/world/tiny_world_roles.json] [--min-cluster-size 5]

A text is named right when its name is the concept it was written for; the world's background texts (a nuisance,
no concept of the paper's) are left out. Deterministic (SBERT on CPU, HDBSCAN has no randomness).
"""
from __future__ import annotations

import argparse

import numpy as np

UNSCORED = ("background",)  # the world's background texts: a nuisance, no concept of the paper's


def naming_accuracy(truth: dict[str, str], seeds: dict[str, list[str]], selection: str,
                    min_cluster_size: int = 5, unscored: tuple[str, ...] = UNSCORED,
                    text_emb: np.ndarray | None = None) -> tuple[float, dict]:
    """Share of ``truth``'s texts named as built, overall and per concept, with ``seeds`` and ``selection``, as
    discovery names them (:func:`head_roles.discover.seed_centroids`, :func:`~head_roles.discover.cluster_concepts`).
    Every text is clustered (as discovery clusters every text its heads picked); those of an ``unscored`` concept
    are not scored. ``text_emb``: the texts' SBERT embeddings, in ``truth``'s order, if already computed."""
    from head_roles.discover import check_seeds, cluster_concepts, sbert_encode, seed_centroids

    texts = list(truth)
    emb = sbert_encode(texts) if text_emb is None else text_emb
    names = cluster_concepts(emb, seed_centroids(check_seeds(seeds)), min_cluster_size, selection)
    scored = [(truth[t], truth[t] == n) for t, n in zip(texts, names) if truth[t] not in unscored]
    per = {c: float(np.mean([r for k, r in scored if k == c])) for c in sorted({k for k, _ in scored})}
    return float(np.mean([r for _, r in scored])), per


def main(argv: list[str] | None = None) -> int:
    from head_roles.concept_entropy import CLUSTER_SELECTIONS
    from head_roles.corpus import CONCEPT_SEEDS, corpus_concepts
    from head_roles.discover import sbert_encode
    from head_roles.roles import load_roles
    from tools.world import world_concept_seeds, world_corpus_concepts

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--roles", default="", help="a roles file discovered on the world's corpus: score its heads' texts")
    p.add_argument("--min-cluster-size", type=int, default=5)
    args = p.parse_args(argv)
    world = world_corpus_concepts()
    both = {"world": world_concept_seeds(), "paper": CONCEPT_SEEDS}
    sets = [("world corpus", world, both)]
    if args.roles:
        picked = {t for h in load_roles(args.roles).heads for t in h.phrases}
        unknown = sorted(picked - set(world))
        if unknown:
            p.error(f"--roles {args.roles}: its heads picked texts that are not the world's corpus ({unknown[:3]}...)")
        sets.append((f"texts picked by {args.roles}'s heads", {t: world[t] for t in sorted(picked)},
                     both))
    sets.append(("generic corpus (head_roles.corpus), single-concept texts", corpus_concepts(),
                 {"paper": CONCEPT_SEEDS}))
    for title, truth, seed_sets in sets:
        n = sum(c not in UNSCORED for c in truth.values())
        print(f"{title}: {len(truth)} texts, {n} scored (background texts clustered, not scored)"
              if n < len(truth) else f"{title}: {len(truth)} texts")
        emb = sbert_encode(list(truth))  # once per set of texts
        for seed_name, seeds in seed_sets.items():
            for selection in CLUSTER_SELECTIONS:
                acc, per = naming_accuracy(truth, seeds, selection, args.min_cluster_size, text_emb=emb)
                shown = ", ".join(f"{c} {v:.2f}" for c, v in per.items()) if len(per) <= 5 else ""
                print(f"  {seed_name:5s} seeds, {selection:4s}: {100 * acc:5.1f}% named right" +
                      (f" ({shown})" if shown else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
