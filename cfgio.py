"""Merge YAML files and ``KEY VALUE`` lists into a yacs config with errors that name the file, line and key.

Self-contained (yacs, PyYAML and the standard library only), so any entry point can use it::

    merge_file(cfg, "configs/dear.yaml", "trainer config")
    merge_list(cfg, ["OPTIM.LR", "0.002"])

Every failure raises :class:`ConfigError` (a ``ValueError``) with one message a user can act on:
- a missing file, or one that is not YAML (yacs would *execute* a ``.py`` config file: refused);
- malformed YAML: ``file:line:column`` and the parser's complaint;
- an unknown key: the key, its line in the file, and the closest known keys;
- a value of the wrong type: the key, the expected type with the default, and the value given.
"""
from __future__ import annotations

import difflib
import os.path as osp
import re
from typing import Any

import yaml
from yacs.config import CfgNode

YAML_SUFFIXES = (".yaml", ".yml")


class ConfigError(ValueError):
    """A config file or override the user gave cannot be merged; the message says where and why."""


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
        return f"{at}: {key} must be a {kind} (default {default}), got {value}"
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
