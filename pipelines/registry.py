"""The registry of processor, transport and context types.

A type is a name, a pydantic params model and a factory. Built-in modules
(``pipelines.builtins``) and third-party packages (entry point group
``framegraph.types``) export ``TYPES`` lists; a config can only name a
registered type, so it never imports code of its own choosing.
"""

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any

from pipelines.spec import Params

ENTRY_POINT_GROUP = "framegraph.types"
KINDS = ("processor", "transport", "context", "tool")


@dataclass(frozen=True)
class TypeInfo:
    """A registered type: what ``type: NAME`` means in a config."""

    kind: str
    name: str
    params: type[Params]
    factory: Callable[[Any, Any], Any]
    summary: str
    #: For transports that serve many participants (webrtc, websocket): an
    #: async ``serve(agent, options) -> None`` that ``framegraph run`` awaits
    #: instead of running one worker. ``options`` is the CLI's run options.
    serve: Callable[[Any, Any], Awaitable[None]] | None = None


class Registry:
    """Types by kind and name."""

    def __init__(self, types: Iterable[TypeInfo] = ()):
        self._types: dict[str, dict[str, TypeInfo]] = {kind: {} for kind in KINDS}
        for info in types:
            self.add(info)

    def add(self, info: TypeInfo) -> None:
        """Registers a type; a second type of the same kind and name is an error."""
        if info.kind not in KINDS:
            raise ValueError(f"type {info.name}: kind must be one of {KINDS}, not {info.kind!r}")
        if info.name in self._types[info.kind]:
            raise ValueError(f"{info.kind} type {info.name!r} is registered twice")
        self._types[info.kind][info.name] = info

    def get(self, kind: str, name: str) -> TypeInfo | None:
        """Returns the type, or None when no such type is registered."""
        return self._types[kind].get(name)

    def names(self, kind: str) -> list[str]:
        """The registered names of one kind, sorted."""
        return sorted(self._types[kind])

    def all(self) -> list[TypeInfo]:
        """Every registered type, by kind then name."""
        return [self._types[k][n] for k in KINDS for n in self.names(k)]


def _module_types(module_name: str) -> list[TypeInfo]:
    return list(import_module(module_name).TYPES)


def load_registry() -> Registry:
    """Builds the registry from the built-in modules and installed entry points."""
    from pipelines.builtins import BUILTIN_MODULES

    registry = Registry()
    for module_name in BUILTIN_MODULES:
        for info in _module_types(module_name):
            registry.add(info)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        for info in entry.load():
            registry.add(info)
    return registry


_default: Registry | None = None


def default_registry() -> Registry:
    """The process-wide registry, loaded once."""
    global _default
    if _default is None:
        _default = load_registry()
    return _default
