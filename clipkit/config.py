"""Config keys declared once, as typed settings, and the one way every entry point builds a config.

A trainer declares its node as a frozen dataclass whose fields *are* the official keys::

    @register_settings
    @dataclass(frozen=True)
    class CoOpSettings(Settings):
        NODE: ClassVar[str] = "COOP"
        N_CTX: int = key(16, "learnable context tokens")
        CLASS_TOKEN_POSITION: str = key("end", "where the class name sits", choices=("end", "middle", "front"))

``extend_cfg(cfg)`` adds ``cfg.TRAINER.COOP`` with those defaults (only keys that are absent, so it can run
after another repo's ``extend_cfg``); ``CoOpSettings.from_cfg(cfg)`` validates the node and returns the typed
settings models are built from, so ``predict``, figures, benchmarks and tests build models the way the
trainer does. ``load_config`` is the merge order of ``train.py``: defaults -> data-set YAML -> trainer YAML
-> command-line flags -> per-data-set table -> ``KEY VALUE`` overrides -> freeze. Every failure is one
:class:`ConfigError` a user can act on: a missing file, or one that is not YAML (yacs would *execute* a ``.py``
config file: refused); malformed YAML (``file:line:column`` and the parser's complaint); an unknown key (its
line in the file and the closest known keys); a value of the wrong type (the expected type and the default).
"""
from __future__ import annotations

import dataclasses
import difflib
import os.path as osp
import re
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Sequence

import yaml
from yacs.config import CfgNode
from yacs.config import CfgNode as CN

from .precision import PRECISION_ALIASES, PRECISIONS


class ConfigError(ValueError):
    """A config file, key, override or value is wrong; the message says where (file:line, key) and the fix."""


def key(default: Any, help: str, *, choices: Sequence[Any] | None = None, check: Callable[[Any], bool] | None = None,
        rule: str = "", identity: bool = False, aliases: dict[Any, Any] | None = None) -> Any:
    """A config key: its default, a one-line ``help``, allowed ``choices`` or a ``check`` (described by
    ``rule``, e.g. ``">= 0"``), ``aliases`` mapped to canonical values (``{"fp16": "amp"}``), and whether the
    value is part of the learner's ``identity`` (it changes the model, so a checkpoint made with another
    value is refused on load)."""
    meta = {"help": help, "choices": tuple(choices) if choices is not None else None, "check": check,
            "rule": rule, "identity": identity, "aliases": dict(aliases or {})}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def prec_key(default: str = "amp") -> Any:
    """``PREC``: ``fp32``, ``bf16`` or ``amp`` (``fp16``, the CoOp family's name for it, is an alias)."""
    return key(default, "fp32 | bf16 | amp (fp16 autocast + grad scaler on CUDA; fp32 on CPU); fp16 = amp",
               choices=PRECISIONS, aliases=PRECISION_ALIASES)


@dataclass(frozen=True)
class Settings:
    """Base of every trainer's settings: ``cfg.TRAINER.<NODE>`` as a validated, frozen dataclass."""

    NODE: ClassVar[str] = ""

    @classmethod
    def declare(cls, cfg: CN) -> None:
        """Add ``cfg.TRAINER.<NODE>`` with the defaults; keys already present are left as they are."""
        if not hasattr(cfg, "TRAINER"):
            cfg.TRAINER = CN()
        if cls.NODE not in cfg.TRAINER:
            cfg.TRAINER[cls.NODE] = CN()
        node = cfg.TRAINER[cls.NODE]
        for f in dataclasses.fields(cls):
            if f.name not in node:
                default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
                node[f.name] = default

    @classmethod
    def from_cfg(cls, cfg: CN) -> Settings:
        """Validated settings from ``cfg`` (the whole config, or its ``TRAINER.<NODE>`` node)."""
        node = cfg.TRAINER[cls.NODE] if "TRAINER" in cfg else cfg
        values = {}
        for f in dataclasses.fields(cls):
            if f.name not in node:
                raise ConfigError(f"TRAINER.{cls.NODE}.{f.name} is missing; build the config with "
                                  "clipkit.config.load_config (or call extend_cfg on Dassl's defaults)")
            values[f.name] = node[f.name]
        return cls(**values)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            meta = f.metadata
            name = f"TRAINER.{self.NODE}.{f.name}"
            if isinstance(value, str) and value in meta.get("aliases", {}):
                value = meta["aliases"][value]
                object.__setattr__(self, f.name, value)
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if isinstance(default, bool) and not isinstance(value, bool):
                raise ConfigError(f"{name}={value!r} must be True or False")
            if isinstance(default, (int, float)) and not isinstance(default, bool):
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ConfigError(f"{name}={value!r} must be a number")
            if isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
                object.__setattr__(self, f.name, tuple(value))
            choices = meta.get("choices")
            if choices is not None and value not in choices:
                raise ConfigError(f"{name}={value!r} is not supported; choose one of {list(choices)}")
            check = meta.get("check")
            if check is not None and not check(value):
                raise ConfigError(f"{name}={value!r} must be {meta['rule']}")
        self.validate()

    def validate(self) -> None:
        """Checks that involve several keys; subclasses raise :class:`ConfigError`."""

    @classmethod
    def dataset_overrides(cls, dataset: str, task: str) -> dict[str, Any]:
        """Per-data-set values the official repository applies after the YAML files and before the
        command line (MMRL's), as ``{"TRAINER.<NODE>.<KEY>": value}``; applied when the node's
        ``DATASET_TABLE`` is true. ``task`` is the ``TASK`` key (B2N, FS, CD)."""
        return {}

    def identity(self) -> dict[str, Any]:
        """The values that change the model (a checkpoint made with other values is refused)."""
        return {f"TRAINER.{self.NODE}.{f.name}": _plain(getattr(self, f.name))
                for f in dataclasses.fields(self) if f.metadata.get("identity")}

    def help(self) -> str:
        """One line per key: ``TRAINER.<NODE>.<KEY> = default  # help``."""
        lines = []
        for f in dataclasses.fields(self):
            lines.append(f"TRAINER.{self.NODE}.{f.name} = {getattr(self, f.name)!r}  # {f.metadata.get('help', '')}")
        return "\n".join(lines)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


_SETTINGS: dict[str, type[Settings]] = {}


def register_settings(cls: type[Settings]) -> type[Settings]:
    """Class decorator: ``extend_cfg`` will declare ``cls``'s node."""
    if not cls.NODE:
        raise TypeError(f"{cls.__name__} must set NODE, the name of its cfg.TRAINER node")
    _SETTINGS[cls.NODE] = cls
    return cls


def registered_settings() -> dict[str, type[Settings]]:
    return dict(_SETTINGS)


def _add(node: CN, name: str, value: Any) -> None:
    if name not in node:
        node[name] = value


def extend_cfg(cfg: CN) -> CN:
    """Add this project's keys and every registered trainer's node to a Dassl default config.

    Safe to call after another repository's ``extend_cfg`` (CoOp, MaPLe, PromptSRC): keys that exist are
    kept. This is the one call a CoOp-family checkout makes to use our trainers.
    """
    _add(cfg.DATASET, "SUBSAMPLE_CLASSES", "all")  # all, base or new (base-to-novel protocol)
    _add(cfg.DATASET, "PROMPT_TEMPLATE", "")  # overrides the per-dataset template of Table 4 when set
    if "FOLDER" not in cfg.DATASET:
        cfg.DATASET.FOLDER = CN()
    _add(cfg.DATASET.FOLDER, "DIR", "")  # ImageFolder data set: folder (absolute or under DATASET.ROOT)
    _add(cfg.MODEL.BACKBONE, "PATH", "")  # CLIP weights file (or folder holding it); empty: $CLIP_CACHE, ~/.cache/clip
    _add(cfg, "TASK", "B2N")  # protocol, as MMRL's repo names it: B2N (base-to-novel), FS (few-shot), CD (cross-data)
    for cls in _SETTINGS.values():
        cls.declare(cfg)
    return cfg


YAML_SUFFIXES = (".yaml", ".yml")


def all_keys(cfg: CfgNode, prefix: str = "") -> list[str]:
    """Every leaf key of ``cfg`` as ``A.B.C``."""
    keys = []
    for k, v in cfg.items():
        full = f"{prefix}{k}"
        if isinstance(v, CfgNode):
            keys.extend(all_keys(v, full + "."))
        else:
            keys.append(full)
    return keys


def _suggest(cfg: CfgNode, key: str) -> str:
    """``; did you mean A.B or A.C?``: keys of the same section first (``LEARNING_RATE`` -> ``LR`` by its
    initials, then by spelling), then by spelling anywhere."""
    keys = all_keys(cfg)
    section, _, leaf = key.rpartition(".")
    siblings = {k.rpartition(".")[2]: k for k in keys if k.rpartition(".")[0] == section}
    initials = "".join(part[:1] for part in leaf.split("_"))
    close = [siblings[initials]] if initials in siblings and initials != leaf else []
    close += [siblings[m] for m in difflib.get_close_matches(leaf, list(siblings), n=3, cutoff=0.6)]
    close += difflib.get_close_matches(key, keys, n=3, cutoff=0.8)
    close = list(dict.fromkeys(close))[:3]
    return f"; did you mean {' or '.join(close)}?" if close else ""


def _key_line(path: str, key: str) -> int | None:
    """1-based line of ``A.B.C`` in a YAML file (``None`` if it cannot be located)."""
    try:
        with open(path, encoding="utf-8") as f:
            node = yaml.compose(f)
    except (OSError, yaml.YAMLError):
        return None
    line = None
    for part in key.split("."):
        if not isinstance(node, yaml.MappingNode):
            return line
        for k, v in node.value:
            if getattr(k, "value", None) == part:
                line, node = k.start_mark.line + 1, v
                break
        else:
            return line
    return line


def _explain(cfg: CfgNode, e: Exception, where: str, path: str | None = None) -> str:
    """Turn yacs' KeyError / ValueError / AssertionError into one sentence naming the key."""
    msg = e.args[0] if e.args and isinstance(e.args[0], str) else str(e)
    unknown = re.search(r"Non-existent (?:config )?key: ([\w.]+)", msg)
    if unknown:
        key = unknown.group(1)
        line = _key_line(path, key) if path else None
        at = f"{where}:{line}" if line else where
        return f"{at}: unknown config key {key}{_suggest(cfg, key)}"
    mismatch = re.search(r"Type mismatch \((.+?) vs\. (.+?)\) with values \((.+?) vs\. (.+)\) for config key: ([\w.]+)",
                         msg, re.S)
    if mismatch:
        want, _, default, value, key = mismatch.groups()
        line = _key_line(path, key) if path else None
        at = f"{where}:{line}" if line else where
        kind = re.sub(r"<class '(\w+)'>", r"\1", want)
        hint = ""
        if kind == "float" and re.fullmatch(r"[+-]?\d+", value.strip()):
            hint = f" (write {value.strip()}.0: yacs, under Dassl too, does not turn an integer into a float)"
        return f"{at}: {key} must be a {kind} (default {default}), got {value}{hint}"
    return f"{where}: {msg}"


def load_yaml(path: str, what: str = "config file") -> Any:
    """Parse a YAML file safely (no Python tags); malformed YAML names the file, line and column."""
    if not osp.isfile(path):
        raise ConfigError(f"{what} {path} does not exist")
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        at = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        problem = " ".join(p for p in (e.context, e.problem) if p)
        raise ConfigError(f"{at}: malformed YAML in the {what}: {problem}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: malformed YAML in the {what}: {e}") from None


def merge_file(cfg: CfgNode, path: str, what: str = "config file") -> None:
    """Merge the YAML file ``path`` into ``cfg``; see the module docstring for the errors."""
    if not path.endswith(YAML_SUFFIXES):
        raise ConfigError(f"{what} {path} must be a YAML file ({' or '.join(YAML_SUFFIXES)}); Python config "
                          "files are refused because loading them would run their code")
    data = load_yaml(path, what)
    if data is None:
        return
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the {what} must be a mapping of config keys, got a {type(data).__name__}")
    try:
        cfg.merge_from_other_cfg(CfgNode(data))
    except (KeyError, ValueError, AssertionError, TypeError) as e:
        raise ConfigError(_explain(cfg, e, path, path)) from None


def merge_list(cfg: CfgNode, opts: list[str] | None) -> None:
    """Merge ``KEY VALUE`` pairs (the command line's trailing overrides) into ``cfg``."""
    opts = list(opts or [])
    if len(opts) % 2:
        raise ConfigError(f"overrides must be KEY VALUE pairs; {opts[-1]!r} has no value")
    for key, value in zip(opts[0::2], opts[1::2]):
        if isinstance(key, str) and key.startswith("-"):
            raise ConfigError(f"{key} is a flag among the KEY VALUE overrides: put every flag before them")
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z_][\w.]*", key):
            raise ConfigError(f"override {key!r} is not a config key (KEY VALUE pairs, e.g. OPTIM.LR 0.002)")
        try:
            cfg.merge_from_list([key, value])
        except (KeyError, ValueError, AssertionError, TypeError) as e:
            raise ConfigError(_explain(cfg, e, "command line")) from None


def default_config() -> CN:
    """Dassl's defaults (the real Dassl's or the built-in engine's) with the engine's, this project's and every
    registered trainer's keys: the base every config here is merged onto."""
    from dassl.config import get_cfg_default

    from dasslite.config import extend_engine_cfg  # the built-in engine's keys, also on the real Dassl

    return extend_cfg(extend_engine_cfg(get_cfg_default()))


def load_config(config_file: str = "", dataset_config_file: str = "", opts: Sequence[str] = (),
                overrides: dict[str, Any] | None = None, base: CN | None = None, freeze: bool = True) -> CN:
    """The merged config: defaults (+ project and trainer keys) -> data-set YAML -> trainer YAML ->
    ``overrides`` (``{"OUTPUT_DIR": ...}``, what ``train.py``'s flags set) -> ``opts`` -> freeze.

    ``base`` replaces the defaults (e.g. a run folder's saved config).
    """
    if base is None:
        cfg = default_config()
    else:
        cfg = base.clone()
        cfg.defrost()
    if dataset_config_file:
        merge_file(cfg, dataset_config_file, "dataset config")
    if config_file:
        merge_file(cfg, config_file, "trainer config")
    for name, value in (overrides or {}).items():
        _set(cfg, name, value)
    apply_dataset_table(cfg, opts)
    merge_list(cfg, list(opts))
    if freeze:
        cfg.freeze()
    return cfg


def apply_dataset_table(cfg: CN, opts: Sequence[str] = ()) -> dict[str, Any]:
    """Apply the current trainer's per-data-set table (:meth:`Settings.dataset_overrides`), reading the
    trainer, data set, task and switch as they will be once ``opts`` are merged. Returns what was set."""
    final = cfg.clone()
    merge_list(final, opts)
    try:
        from dassl.engine import TRAINER_REGISTRY

        settings_cls = getattr(TRAINER_REGISTRY.get(final.TRAINER.NAME), "Settings", None)
    except (KeyError, ImportError):
        return {}
    if settings_cls is None or not final.TRAINER[settings_cls.NODE].get("DATASET_TABLE", False):
        return {}
    table = settings_cls.dataset_overrides(final.DATASET.NAME, final.get("TASK", "B2N"))
    for name, value in table.items():
        _set(cfg, name, value)
    if table:
        print(f"Per-data-set values of {final.TRAINER.NAME} for {final.DATASET.NAME} ({final.get('TASK', 'B2N')}): "
              + ", ".join(f"{k} {v}" for k, v in table.items()))
    return table


def _set(cfg: CN, dotted: str, value: Any) -> None:
    node = cfg
    *parents, last = dotted.split(".")
    for p in parents:
        if p not in node:
            raise ConfigError(f"override {dotted}: unknown config key{_suggest(cfg, dotted)}")
        node = node[p]
    if last not in node:
        raise ConfigError(f"override {dotted}: unknown config key{_suggest(cfg, dotted)}")
    node[last] = value
