"""Concept Entropy and the rules that turn it into head roles. Pure Python: no torch, no models.

    from head_roles.concept_entropy import QuantileRule, ThresholdRule, assign_roles, distribution, entropy
    d = distribution(["color", "color", "shape"])            # {"color": 0.667, "shape": 0.333}
    h = entropy(d)                                           # nats
    QuantileRule()                                           # the paper's text: bottom / top 20% of entropies
    QuantileRule.top(0.3)                                    # Table 6's "Top 30%": 30% at each tail
    ThresholdRule(specialized=0.4, generalization=0.7)       # on H / log(number of concepts)

A rule splits the heads into ``specialized`` / ``generalization`` / ``mixed`` from their entropies alone;
:func:`assign_roles` then names each specialized head ``attribute`` (its dominant concept is a core attribute)
or ``other_specialized``. Why two rules: the supplementary's text says bottom / top 20% quantiles, yet its
Table 2 has 36 specialized, 7 generalization and 5 mixed heads of 48, which 20% quantiles cannot give (they
always give 10 / 10 / 28); fixed thresholds on the normalised entropy give whatever proportions the entropies
themselves have, and can give Table 2's.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

SPLITS = ("specialized", "generalization", "mixed")
TABLE6_QUANTILES = (0.1, 0.2, 0.3, 0.4)  # the supplementary's threshold ablation (Table 6, left)
DEFAULT_CORE = ("color", "shape", "texture", "object", "location")
CLUSTER_SELECTIONS = ("leaf", "eom")  # HDBSCAN cluster_selection_method (head_roles.discover.cluster_concepts)


class DiscoveryError(ValueError):
    """Bad input to head-role discovery; the message says what to change."""


# ---------------------------------------------------------------------------------------------------
# Concept Entropy
# ---------------------------------------------------------------------------------------------------
def distribution(concepts: Sequence[str]) -> dict[str, float]:
    """The distribution of a head's texts over concepts, ``{concept: fraction}``, sorted by concept."""
    counts = Counter(concepts)
    n = sum(counts.values())
    return {c: counts[c] / n for c in sorted(counts)}


def entropy(p: dict[str, float]) -> float:
    """Shannon entropy in nats of a distribution given as ``{concept: probability}``."""
    return -sum(v * math.log(v) for v in p.values() if v > 0)


def normalised_entropy(h: float, n_concepts: int) -> float:
    """``h / log(n_concepts)``: 0 for a head whose texts share one concept, 1 for texts spread evenly over
    all ``n_concepts`` (a head with ``T`` texts cannot exceed ``log(T) / log(n_concepts)``)."""
    if n_concepts < 2:
        raise DiscoveryError(f"normalised entropy needs at least 2 concepts, got {n_concepts}")
    return h / math.log(n_concepts)


def dominant_concept(p: dict[str, float]) -> str:
    """The most frequent concept (ties: the name that sorts last, as before this module existed)."""
    return max(p, key=lambda c: (p[c], c))


# ---------------------------------------------------------------------------------------------------
# rules
# ---------------------------------------------------------------------------------------------------
def _count(q: float, n: int) -> int:
    """``q * n`` heads, rounded to the nearest integer, halves up (``round`` would round halves to even)."""
    return math.floor(q * n + 0.5 + 1e-9)


@dataclass(frozen=True)
class QuantileRule:
    """The lowest ``specialized`` fraction of entropies are specialized, the highest ``generalization``
    fraction generalization, the rest mixed (the supplementary's text: 0.2 and 0.2).

    Each tail holds ``fraction * heads`` heads rounded to the nearest integer (halves up); when the two tails
    would overlap the generalization tail is shortened. Equal entropies at a cut are ordered by head position
    ``(layer, head)``, so the counts are exact and the result deterministic (see :func:`tied_across_split`).
    """

    specialized: float = 0.2
    generalization: float = 0.2
    name = "quantile"

    def __post_init__(self) -> None:
        for what, q in (("specialized", self.specialized), ("generalization", self.generalization)):
            if not 0 <= q <= 1:
                raise DiscoveryError(f"{what} quantile {q} must be in [0, 1]")
        if self.specialized + self.generalization > 1:
            raise DiscoveryError(f"quantiles overlap: specialized {self.specialized} + generalization "
                                 f"{self.generalization} must be at most 1")

    @classmethod
    def top(cls, q: float) -> QuantileRule:
        """Table 6's "Top Q": ``q`` of the heads at each tail (``top(0.2)`` is the default rule)."""
        if not 0 < q <= 0.5:
            raise DiscoveryError(f"--quantile {q} must be in (0, 0.5]: it is the fraction of heads at each tail "
                                 "(0.5 leaves no mixed head)")
        return cls(q, q)

    def split(self, entropies: Sequence[float], n_concepts: int) -> list[str]:
        """``specialized`` / ``generalization`` / ``mixed`` per head; ``n_concepts`` is not used."""
        n = len(entropies)
        order = sorted(range(n), key=lambda i: (entropies[i], i))  # ties by head order
        n_spec = _count(self.specialized, n)
        n_gen = min(_count(self.generalization, n), n - n_spec)
        out = ["mixed"] * n
        for i in order[:n_spec]:
            out[i] = "specialized"
        for i in order[n - n_gen:] if n_gen else []:
            out[i] = "generalization"
        return out

    def provenance(self) -> dict:
        return {"name": self.name, "specialized_quantile": self.specialized,
                "generalization_quantile": self.generalization,
                "meaning": "lowest specialized_quantile * heads entropies (rounded, halves up) specialized, highest "
                           "generalization_quantile * heads generalization, rest mixed; equal entropies at a cut "
                           "ordered by (layer, head)"}


@dataclass(frozen=True)
class ThresholdRule:
    """Thresholds on the normalised entropy ``H / log(n_concepts)``: at most ``specialized`` is specialized, at
    least ``generalization`` is generalization, in between mixed. The proportions are whatever the entropies
    give, so they can be Table 2's (36 / 7 / 5 of 48); equal entropies always get the same role."""

    specialized: float
    generalization: float
    name = "threshold"

    def __post_init__(self) -> None:
        for what, t in (("specialized", self.specialized), ("generalization", self.generalization)):
            if not 0 <= t <= 1:
                raise DiscoveryError(f"{what} threshold {t} must be in [0, 1] (normalised entropy)")
        if self.specialized >= self.generalization:
            raise DiscoveryError(f"specialized threshold {self.specialized} must be below the generalization "
                                 f"threshold {self.generalization}")

    def split(self, entropies: Sequence[float], n_concepts: int) -> list[str]:
        """``specialized`` / ``generalization`` / ``mixed`` per head."""
        out = []
        for h in entropies:
            hn = normalised_entropy(h, n_concepts)
            out.append("specialized" if hn <= self.specialized + 1e-12 else
                       "generalization" if hn >= self.generalization - 1e-12 else "mixed")
        return out

    def provenance(self) -> dict:
        return {"name": self.name, "specialized_threshold": self.specialized,
                "generalization_threshold": self.generalization,
                "meaning": "normalised entropy H / log(n_concepts) <= specialized_threshold specialized, "
                           ">= generalization_threshold generalization, rest mixed"}


RoleRule = QuantileRule | ThresholdRule


def tied_across_split(entropies: Sequence[float], splits: Sequence[str]) -> int:
    """How many heads share their exact entropy with a head of another split: heads whose role the quantile rule
    decided by head order alone (always 0 for :class:`ThresholdRule`)."""
    by_value: dict[float, set[str]] = {}
    for h, s in zip(entropies, splits):
        by_value.setdefault(round(h, 12), set()).add(s)
    return sum(len(by_value[round(h, 12)]) > 1 for h in entropies)


def assign_roles(entropies: Sequence[float], dominant: Sequence[str], core: Sequence[str], rule: RoleRule,
                 n_concepts: int = 12) -> list[tuple[str, str]]:
    """``(role, concept)`` per head: ``rule`` splits the heads by entropy; a specialized head is ``attribute``
    when its dominant concept is in ``core``, else ``other_specialized``; generalization heads keep their
    dominant concept, mixed heads get ``none``. ``n_concepts``: the number of concepts a text can take (the
    normaliser of :class:`ThresholdRule`)."""
    if len(entropies) != len(dominant):
        raise DiscoveryError(f"{len(entropies)} entropies but {len(dominant)} dominant concepts")
    out: list[tuple[str, str]] = []
    for split, concept in zip(rule.split(entropies, n_concepts), dominant):
        if split == "specialized":
            out.append(("attribute" if concept in core else "other_specialized", concept))
        elif split == "generalization":
            out.append(("generalization", concept))
        else:
            out.append(("mixed", "none"))
    return out
