"""Name -> object registries (trainers, data sets, evaluators)."""
from __future__ import annotations

from typing import Any, Callable


class Registry:
    """Maps names to classes or functions; used as a decorator: ``@REGISTRY.register()``."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._obj_map: dict[str, Any] = {}

    def _do_register(self, name: str, obj: Any, force: bool = False) -> None:
        if name in self._obj_map and not force and self._obj_map[name] is not obj:
            raise KeyError(f'An object named "{name}" was already registered in "{self._name}" registry')
        self._obj_map[name] = obj

    def register(self, obj: Any = None, force: bool = False) -> Callable | None:
        if obj is None:
            def wrapper(fn_or_class):
                self._do_register(fn_or_class.__name__, fn_or_class, force=force)
                return fn_or_class
            return wrapper
        self._do_register(obj.__name__, obj, force=force)
        return None

    def get(self, name: str) -> Any:
        if name not in self._obj_map:
            raise KeyError(
                f'Object name "{name}" does not exist in "{self._name}" registry; '
                f"registered: {', '.join(sorted(self._obj_map)) or 'none'}"
            )
        return self._obj_map[name]

    def registered_names(self) -> list[str]:
        return list(self._obj_map.keys())

    def __contains__(self, name: str) -> bool:
        return name in self._obj_map
