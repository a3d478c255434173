"""``--set KEY.PATH=VALUE``: change any config value from the command line.

An override is applied to the loaded document (``pipelines.loader``) before
validation, so a value set on the command line is checked exactly like one
written in the file, and a problem with it names the flag instead of a line
of the file::

    framegraph run configs/assistant.yaml --set transport.input=q.wav --set processors.tts.voice=en-gb

``KEY.PATH`` is dotted (a number indexes a list: ``pipeline.1``); ``VALUE`` is
read as YAML, so ``8``, ``true`` and ``0.5`` are a number, a boolean and a
float, and ``'8'`` is a string. A param whose field is declared a path
(``json_schema_extra={"format": "path"}``, as the file transport's are) is
resolved against the current folder when set here, as a path typed in a
shell is, whereas in the file it is relative to the config's folder.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipelines.errors import ConfigError, ConfigErrors, Mark
from pipelines.loader import LoadedConfig, load_file
from pipelines.registry import Registry, default_registry
from pipelines.validate import Agent, validate_loaded

FLAG = "--set"


@dataclass(frozen=True)
class FlagMark(Mark):
    """Where a value came from when it came from a ``--set`` flag: errors print the flag."""

    def __str__(self) -> str:
        return FLAG


@dataclass(frozen=True)
class Override:
    """One parsed ``--set KEY.PATH=VALUE``."""

    path: tuple[str | int, ...]
    value: Any

    @property
    def key(self) -> str:
        return ".".join(str(p) for p in self.path)


def parse_override(text: str) -> Override:
    """Parses ``KEY.PATH=VALUE``.

    Raises:
        ConfigErrors: No ``=``, an empty key part, or a VALUE that is not YAML.
    """
    key, sep, raw = text.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise _error(key.strip(), f"expected KEY.PATH=VALUE, got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise _error(key, f"the value is not valid YAML ({getattr(e, 'problem', None) or e})") from None
    return Override(tuple(int(p) if p.isdigit() else p for p in parts), value)


def apply_overrides(loaded: LoadedConfig, overrides: list[str], registry: Registry | None = None) -> LoadedConfig:
    """Sets each override's value in ``loaded`` (in place, in order) and marks it as the flag's.

    Raises:
        ConfigErrors: Every override that is malformed or cannot be placed.
    """
    errors: list[ConfigError] = []
    for text in overrides:
        try:
            override = parse_override(text)
            _place(loaded, override, registry or default_registry())
        except ConfigErrors as e:
            errors.extend(e.errors)
    if errors:
        raise ConfigErrors(errors)
    return loaded


def load_agent_with(path: Path | str, overrides: list[str] = (), registry: Registry | None = None) -> Agent:
    """Loads an agent file, applies ``overrides``, and validates the result.

    Raises:
        ConfigErrors: The file's problems, or the overrides', each naming its place.
    """
    loaded = load_file(path)
    errors: list[ConfigError] = []
    try:
        apply_overrides(loaded, list(overrides), registry)
    except ConfigErrors as e:
        errors = e.errors  # the overrides that could be placed are still validated
    try:
        agent = validate_loaded(loaded, registry)
    except ConfigErrors as e:
        raise ConfigErrors(errors + e.errors) from None
    if errors:
        raise ConfigErrors(errors)
    return agent


def _place(loaded: LoadedConfig, override: Override, registry: Registry) -> None:
    if loaded.data is None:
        loaded.data = {}
    node = loaded.data
    *parents, last = override.path
    for depth, part in enumerate(parents):
        node = _child(node, part, override, depth)
    if not isinstance(node, (dict, list)):
        raise _error(override.key, f"{_dotted(override.path[:-1])} is not a mapping or a list")
    value = _as_path(loaded.data, override, registry)
    if isinstance(node, list):
        if not isinstance(last, int) or last >= len(node):
            raise _error(override.key, f"{_dotted(override.path[:-1])} is a list of {len(node)}: no item {last}")
        node[last] = value
    else:
        node[str(last)] = value
    mark = FlagMark(Path(FLAG), 0, 0)
    for marks in (loaded.value_marks, loaded.key_marks):
        for loc in [loc for loc in marks if loc[: len(override.path)] == override.path]:
            del marks[loc]  # the file's marks under the replaced value no longer apply
        marks[override.path] = mark


def _child(node: Any, part: str | int, override: Override, depth: int) -> Any:
    """The value at ``part`` under ``node``, creating a mapping where a key is missing."""
    where = _dotted(override.path[:depth]) or "the config"
    if isinstance(node, list):
        if not isinstance(part, int) or part >= len(node):
            raise _error(override.key, f"{where} is a list of {len(node)}: no item {part}")
        return node[part]
    if not isinstance(node, dict):
        raise _error(override.key, f"{where} is not a mapping or a list")
    return node.setdefault(str(part), {})


def _as_path(data: Any, override: Override, registry: Registry) -> Any:
    """The value, made absolute from the current folder if it sets a param declared a path."""
    value = override.value
    if not isinstance(value, str) or not value or Path(value).expanduser().is_absolute():
        return value
    field = _param_field(data, override.path, registry)
    extra = getattr(field, "json_schema_extra", None)
    if isinstance(extra, dict) and extra.get("format") == "path":
        return str(Path(value).expanduser().resolve())
    return value


def _param_field(data: Any, path: tuple, registry: Registry):
    """The pydantic field a ``transport.X`` or ``processors.ID.X`` path sets, or None."""
    if len(path) == 2 and path[0] == "transport":
        block, kind = data.get("transport"), "transport"
    elif len(path) == 3 and path[0] == "processors":
        block, kind = (data.get("processors") or {}).get(path[1]), "processor"
    else:
        return None
    info = registry.get(kind, block.get("type")) if isinstance(block, dict) and isinstance(block.get("type"), str) else None
    return info.params.model_fields.get(str(path[-1])) if info else None


def _dotted(path: tuple) -> str:
    return ".".join(str(p) for p in path)


def _error(key: str, message: str) -> ConfigErrors:
    return ConfigErrors([ConfigError(FlagMark(Path(FLAG), 0, 0), key, message)])
