"""Load, validate and query head-role files (``head_roles/*.json``; schema in the README)."""
from __future__ import annotations

import hashlib
import json
import os
import os.path as osp
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

ROLES = ("attribute", "other_specialized", "generalization", "mixed")
CONCEPTS = ("location", "object", "color", "shape", "texture", "animal", "human", "text", "number", "style",
            "emotion", "action", "none")
ISOLATED_ROLES = ("generalization", "other_specialized")
SCHEMA_VERSION = 1
HERE = osp.dirname(osp.abspath(__file__))


class RolesFileError(ValueError):
    """A roles file is malformed; the message names the entry and the fix."""


class RolesMismatch(ValueError):
    """A roles file does not fit the backbone (or checkpoint) it is used with."""


@dataclass(frozen=True)
class HeadRole:
    """The role of one attention head. ``layer`` counts from 1, ``head`` from 0."""

    layer: int
    head: int
    role: str
    concept: str
    phrases: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def isolated(self) -> bool:
        """Generalization and other-specialized heads never exchange attention with attribute tokens."""
        return self.role in ISOLATED_ROLES


@dataclass(frozen=True)
class HeadRoles:
    """Roles of every head of ``layers`` of a ViT with ``num_layers`` x ``num_heads`` heads."""

    backbone: str
    num_layers: int
    num_heads: int
    width: int
    layers: tuple[int, ...]
    core_attributes: tuple[str, ...]
    heads: tuple[HeadRole, ...]
    source: str = ""
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    # -- queries -------------------------------------------------------------------------------------
    def layer(self, layer: int) -> tuple[HeadRole, ...]:
        """The roles of ``layer`` (1-based), ordered by head."""
        if layer not in self.layers:
            raise KeyError(f"layer {layer} has no roles in {self.source or self.backbone}; it lists {self.layers}")
        return tuple(sorted((h for h in self.heads if h.layer == layer), key=lambda h: h.head))

    def get(self, layer: int, head: int) -> HeadRole:
        for h in self.heads:
            if h.layer == layer and h.head == head:
                return h
        raise KeyError(f"no role for layer {layer}, head {head}")

    def heads_for_attribute(self, layer: int, attribute: str) -> list[int]:
        """Heads of ``layer`` that serve core attribute ``attribute``."""
        if attribute not in self.core_attributes:
            raise KeyError(f"{attribute!r} is not a core attribute; core attributes: {self.core_attributes}")
        return [h.head for h in self.layer(layer) if h.role == "attribute" and h.concept == attribute]

    def heads_with_role(self, layer: int, role: str) -> list[int]:
        if role not in ROLES:
            raise KeyError(f"unknown role {role!r}; roles: {ROLES}")
        return [h.head for h in self.layer(layer) if h.role == role]

    def isolated_heads(self, layer: int) -> list[int]:
        """Heads of ``layer`` cut off from the attribute tokens (generalization and other specialized)."""
        return [h.head for h in self.layer(layer) if h.isolated]

    def role_counts(self) -> Counter:
        return Counter(h.role for h in self.heads)

    def attribute_counts(self) -> Counter:
        return Counter(h.concept for h in self.heads if h.role == "attribute")

    @property
    def first_layer(self) -> int:
        return min(self.layers)

    # -- identity and compatibility ------------------------------------------------------------------
    def assignment(self) -> list[tuple[int, int, str, str]]:
        return sorted((h.layer, h.head, h.role, h.concept) for h in self.heads)

    @property
    def digest(self) -> str:
        """SHA-256 of what determines the masks (backbone shape, attributes, assignment), not of phrases."""
        payload = json.dumps([self.num_layers, self.num_heads, self.width, list(self.core_attributes),
                              self.assignment()])
        return hashlib.sha256(payload.encode()).hexdigest()

    def role_codes(self) -> list[list[int]]:
        """``[len(layers)][num_heads]`` integers encoding (role, concept): a compact identity for checkpoints."""
        return [[ROLES.index(h.role) * len(CONCEPTS) + CONCEPTS.index(h.concept) for h in self.layer(layer)]
                for layer in self.layers]

    def check_backbone(self, num_layers: int, num_heads: int, width: int, what: str = "the loaded backbone") -> None:
        """Raise :class:`RolesMismatch` unless the file describes a ViT of this shape."""
        ours = (self.num_layers, self.num_heads, self.width)
        theirs = (num_layers, num_heads, width)
        if ours != theirs:
            raise RolesMismatch(
                f"Head roles {self.source or self.backbone!r} describe a ViT with (layers, heads, width)={ours}, "
                f"but {what} has {theirs}. Use the roles file of that backbone (TRAINER.<NAME>.ROLES_FILE), "
                "or discover one with `python -m head_roles.discover`."
            )

    def replace_heads(self, heads: list[HeadRole], note: str) -> HeadRoles:
        """A copy with other role assignments (ablations); keeps the shape facts."""
        return HeadRoles(self.backbone, self.num_layers, self.num_heads, self.width, self.layers,
                         self.core_attributes, tuple(heads), source=f"{self.source} [{note}]", meta=self.meta)

    def specialized_counts(self) -> Counter:
        """Heads per concept among the specialized ones (attribute and other specialized)."""
        return Counter(h.concept for h in self.heads if h.role in ("attribute", "other_specialized"))

    def with_attributes(self, attributes: Sequence[str]) -> HeadRoles:
        """The roles with ``attributes`` as the core attributes (the concepts that get tokens, in this order):
        a specialized head of one of them becomes an attribute head, an attribute head of a concept not among
        them becomes other specialized (so it is isolated). Generalization and mixed heads are unchanged."""
        attributes = tuple(attributes)
        bad = [a for a in attributes if a not in CONCEPTS or a == "none"]
        if not attributes or bad or len(set(attributes)) != len(attributes):
            raise RolesFileError(f"attributes {list(attributes)} must be distinct concepts from {CONCEPTS[:-1]}")
        if attributes == self.core_attributes:
            return self
        heads = []
        for h in self.heads:
            role = h.role
            if role in ("attribute", "other_specialized"):
                role = "attribute" if h.concept in attributes else "other_specialized"
            heads.append(HeadRole(h.layer, h.head, role, h.concept, h.phrases, h.extra))
        return HeadRoles(self.backbone, self.num_layers, self.num_heads, self.width, self.layers, attributes,
                         tuple(heads), source=f"{self.source} [attributes={','.join(attributes)}]", meta=self.meta)

    def to_dict(self) -> dict:
        doc = dict(self.meta)
        doc.update({
            "schema_version": SCHEMA_VERSION, "backbone": self.backbone, "num_layers": self.num_layers,
            "num_heads": self.num_heads, "width": self.width, "layers": list(self.layers),
            "core_attributes": list(self.core_attributes),
            "heads": [dict(h.extra, layer=h.layer, head=h.head, role=h.role, concept=h.concept,
                           phrases=list(h.phrases)) for h in sorted(self.heads, key=lambda h: (h.layer, h.head))],
        })
        return doc

    def save(self, path: str) -> None:
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2, ensure_ascii=False)
            f.write("\n")
        os.replace(tmp, path)


def default_roles_path(backbone: str) -> str:
    """``ViT-B/16`` -> ``head_roles/vit_b16.json``."""
    stem = backbone.lower().replace("vit-", "vit_").replace("/", "").replace("@", "_").replace("-", "_")
    return osp.join(HERE, f"{stem}.json")


BACKBONE_NAME = re.compile(r"(ViT-[A-Za-z]+/\d+(@\d+px)?|RN\d+(x\d+)?)")  # OpenAI's names: ViT-B/16, RN50x4, ...


def _looks_like_path(name: str) -> bool:
    """A roles-file path rather than a backbone name (``ViT-B/16`` has a slash but is a name)."""
    return name.endswith(".json") or (("/" in name or os.sep in name) and not BACKBONE_NAME.fullmatch(name))


def load_roles(path_or_backbone: str) -> HeadRoles:
    """Load and validate a roles file given its path or a backbone name such as ``ViT-B/16``."""
    path = path_or_backbone
    if not osp.isfile(path):
        if _looks_like_path(path):
            raise FileNotFoundError(f"Head-roles file {path} does not exist. Pass the path of a roles JSON file "
                                    "(TRAINER.<NAME>.ROLES_FILE), or create one with `python -m head_roles.discover`.")
        path = default_roles_path(path_or_backbone)
        if not osp.isfile(path):
            shipped = sorted(f for f in os.listdir(HERE) if f.endswith(".json"))
            raise FileNotFoundError(
                f"No head-roles file ships for backbone {path_or_backbone!r} (it would be {path}; shipped: "
                f"{', '.join(shipped)}). Pass the path of a roles JSON file (TRAINER.<NAME>.ROLES_FILE), or "
                "create one with `python -m head_roles.discover`."
            )
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except json.JSONDecodeError as e:
        raise RolesFileError(f"{path}: not valid JSON ({e}); fix the syntax at line {e.lineno}") from e
    return parse_roles(doc, source=path)


def _need(doc: dict, key: str, typ, source: str):
    if key not in doc:
        raise RolesFileError(f"{source}: missing top-level key {key!r}; see the schema in README 'Head roles'")
    value = doc[key]
    if not isinstance(value, typ) or isinstance(value, bool):
        raise RolesFileError(f"{source}: {key!r} must be {getattr(typ, '__name__', typ)}, got {value!r}")
    return value


def parse_roles(doc: dict, source: str = "<dict>") -> HeadRoles:
    """Validate a roles document; every problem names the entry and the fix."""
    if not isinstance(doc, dict):
        raise RolesFileError(f"{source}: the top level must be a JSON object")
    version = doc.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise RolesFileError(f"{source}: schema_version {version} is not supported (expected {SCHEMA_VERSION})")
    backbone = _need(doc, "backbone", str, source)
    num_layers = _need(doc, "num_layers", int, source)
    num_heads = _need(doc, "num_heads", int, source)
    width = _need(doc, "width", int, source)
    if num_layers < 1 or num_heads < 1 or width < 1 or width % num_heads:
        raise RolesFileError(f"{source}: num_layers, num_heads, width must be positive and width divisible by heads")
    layers = _need(doc, "layers", list, source)
    bad = [layer for layer in layers if not isinstance(layer, int) or not 1 <= layer <= num_layers]
    if not layers or bad or len(set(layers)) != len(layers):
        raise RolesFileError(f"{source}: 'layers' must list distinct layers in 1..{num_layers} (1-based); bad: {bad}")
    core = _need(doc, "core_attributes", list, source)
    unknown = [c for c in core if c not in CONCEPTS or c == "none"]
    if not core or unknown or len(set(core)) != len(core):
        raise RolesFileError(f"{source}: core_attributes {core} must be distinct concepts from {CONCEPTS[:-1]}")
    entries = _need(doc, "heads", list, source)
    seen: dict[tuple[int, int], int] = {}
    heads = []
    for i, e in enumerate(entries):
        where = f"{source}: heads[{i}]"
        if not isinstance(e, dict):
            raise RolesFileError(f"{where} must be an object with layer, head, role, concept")
        for key in ("layer", "head", "role", "concept"):
            if key not in e:
                raise RolesFileError(f"{where} lacks {key!r}")
        layer, head, role, concept = e["layer"], e["head"], e["role"], e["concept"]
        where = f"{source}: heads[{i}] (layer {layer}, head {head})"
        if isinstance(layer, bool) or not isinstance(layer, int) or layer not in layers:
            raise RolesFileError(f"{where}: layer must be one of 'layers' {layers} (layers count from 1)")
        if isinstance(head, bool) or not isinstance(head, int) or not 0 <= head < num_heads:
            raise RolesFileError(f"{where}: head must be in 0..{num_heads - 1} (heads count from 0)")
        if (layer, head) in seen:
            raise RolesFileError(f"{where}: duplicate of heads[{seen[(layer, head)]}]; keep one role per head")
        seen[(layer, head)] = i
        if role not in ROLES:
            raise RolesFileError(f"{where}: role {role!r} is not one of {ROLES}")
        if concept not in CONCEPTS:
            raise RolesFileError(f"{where}: concept {concept!r} is not one of {CONCEPTS}")
        if role == "attribute" and concept not in core:
            raise RolesFileError(
                f"{where}: an attribute head must name a core attribute {core}, got {concept!r}; "
                "use role 'other_specialized' for other concepts"
            )
        phrases = e.get("phrases", [])
        if not isinstance(phrases, list) or not all(isinstance(p, str) for p in phrases):
            raise RolesFileError(f"{where}: phrases must be a list of strings")
        extra = {k: v for k, v in e.items() if k not in ("layer", "head", "role", "concept", "phrases")}
        heads.append(HeadRole(layer, head, role, concept, tuple(phrases), extra))
    missing = [(layer, h) for layer in layers for h in range(num_heads) if (layer, h) not in seen]
    if missing:
        raise RolesFileError(f"{source}: {len(missing)} heads have no role, e.g. layer {missing[0][0]} head "
                             f"{missing[0][1]}; every head of every listed layer needs exactly one entry")
    known = {"schema_version", "backbone", "num_layers", "num_heads", "width", "layers", "core_attributes", "heads"}
    meta = {k: v for k, v in doc.items() if k not in known}
    return HeadRoles(backbone, num_layers, num_heads, width, tuple(sorted(layers)), tuple(core),
                     tuple(sorted(heads, key=lambda h: (h.layer, h.head))), source=source, meta=meta)


def attribute_set(roles: HeadRoles, k: int) -> tuple[str, ...]:
    """The ``k`` concepts that get tokens when the paper's K varies (its Table 6; it does not list them).

    Rule: the concepts with the most specialized heads, keeping the roles file's core set as the backbone:
    ``k <= len(core)`` keeps the ``k`` core attributes with the most attribute heads; ``k > len(core)`` adds
    the non-core concepts with the most specialized heads. Ties break by the order of :data:`CONCEPTS`.
    For ViT-B/16's Table 2: K=3 is location, object, texture; K=7 adds human and text to the five.
    """
    counts = roles.specialized_counts()
    core = list(roles.core_attributes)
    if k < 1:
        raise ValueError(f"k={k} must be >= 1")
    if k <= len(core):
        keep = sorted(core, key=lambda c: (-counts[c], CONCEPTS.index(c)))[:k]
        return tuple(c for c in core if c in keep)
    others = sorted((c for c in counts if c not in core), key=lambda c: (-counts[c], CONCEPTS.index(c)))
    if len(core) + len(others) < k:
        raise ValueError(f"only {len(core) + len(others)} concepts have specialized heads; cannot pick {k}")
    return tuple(core + others[: k - len(core)])
