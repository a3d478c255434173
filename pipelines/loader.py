"""YAML text to plain data, with a file:line:column mark for every key and value.

The loader is the only module that reads YAML. It expands ``${VAR}`` and
``${VAR:-default}`` from the environment in string scalars and resolves
``!include FILE`` relative to the including file, refusing any path that
leaves the folder of the top-level config.
"""

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipelines.errors import ConfigError, ConfigErrors, Mark

INCLUDE_TAG = "!include"
_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

Path_ = tuple[str | int, ...]


@dataclass
class LoadedConfig:
    """A config's data plus the marks that say where each part came from."""

    path: Path
    data: Any
    value_marks: dict[Path_, Mark] = field(default_factory=dict)
    key_marks: dict[Path_, Mark] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        """The folder that relative paths in the config are resolved against."""
        return self.path.parent

    def mark_for(self, loc: Path_, *, at_key: bool = False) -> Mark | None:
        """Returns the mark of the deepest known prefix of ``loc``."""
        loc = tuple(loc)
        for end in range(len(loc), -1, -1):
            prefix = loc[:end]
            if at_key and prefix in self.key_marks:
                return self.key_marks[prefix]
            if prefix in self.value_marks:
                return self.value_marks[prefix]
        return None


class _Composer:
    """Turns YAML nodes into Python values, recording marks and errors."""

    def __init__(self, root: Path, loaded: LoadedConfig, errors: list[ConfigError]):
        self.root = root
        self.loaded = loaded
        self.errors = errors

    def load(self, text: str, file: Path, path: Path_, include_chain: tuple[Path, ...]) -> Any:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            where = Mark(file, mark.line + 1, mark.column + 1) if mark else Mark(file, 1, 1)
            problem = e.problem or e.context or "malformed YAML"
            self.errors.append(ConfigError(where, "", f"malformed YAML: {problem}"))
            return None
        finally:
            loader.dispose()
        if node is None:
            return None
        return self._convert(loader, node, file, path, include_chain)

    def _mark(self, file: Path, node: yaml.Node) -> Mark:
        return Mark(file, node.start_mark.line + 1, node.start_mark.column + 1)

    def _convert(self, loader, node, file, path, chain) -> Any:
        self.loaded.value_marks[path] = self._mark(file, node)
        if node.tag == INCLUDE_TAG:
            return self._include(node, file, path, chain)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(loader, node, file, path, chain)
        if isinstance(node, yaml.SequenceNode):
            return [self._convert(loader, n, file, path + (i,), chain) for i, n in enumerate(node.value)]
        try:
            value = loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as e:
            self.errors.append(ConfigError(self._mark(file, node), _dotted(path), e.problem or str(e)))
            return None
        if isinstance(value, str):
            return self._interpolate(value, self._mark(file, node), path)
        return value

    def _mapping(self, loader, node, file, path, chain) -> dict:
        result: dict = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.errors.append(ConfigError(self._mark(file, key_node), _dotted(path), "keys must be plain names"))
                continue
            key = loader.construct_object(key_node)
            key_mark = self._mark(file, key_node)
            if key in result:
                self.errors.append(ConfigError(key_mark, _dotted(path + (key,)), "duplicate key"))
                continue
            self.loaded.key_marks[path + (key,)] = key_mark
            result[key] = self._convert(loader, value_node, file, path + (key,), chain)
        return result

    def _include(self, node, file, path, chain) -> Any:
        mark = self._mark(file, node)
        if not isinstance(node, yaml.ScalarNode):
            self.errors.append(ConfigError(mark, _dotted(path), "!include takes a file name"))
            return None
        target = (file.parent / str(node.value)).resolve()
        if not target.is_relative_to(self.root):
            self.errors.append(
                ConfigError(mark, _dotted(path), f"!include {node.value} leaves the config's folder {self.root}")
            )
            return None
        if target in chain:
            self.errors.append(ConfigError(mark, _dotted(path), f"!include {node.value} includes itself"))
            return None
        try:
            text = target.read_text(encoding="utf-8")
        except OSError as e:
            self.errors.append(ConfigError(mark, _dotted(path), f"cannot read included file: {e.strerror}"))
            return None
        return self.load(text, target, path, chain + (target,))

    def _interpolate(self, value: str, mark: Mark, path: Path_) -> str:
        def replace(match: re.Match) -> str:
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            self.errors.append(
                ConfigError(mark, _dotted(path), f"environment variable {name} is not set", "use ${" + name + ":-default}")
            )
            return ""

        return _ENV_PATTERN.sub(replace, value)


def _dotted(path: Path_) -> str:
    return ".".join(str(p) for p in path)


def load_text(text: str, path: Path | str = "<text>") -> LoadedConfig:
    """Loads config text; ``path`` names it in errors and anchors ``!include``.

    Raises:
        ConfigErrors: with every problem found.
    """
    path = Path(path)
    root = path.parent.resolve()
    loaded = LoadedConfig(path=path, data=None)
    errors: list[ConfigError] = []
    loaded.data = _Composer(root, loaded, errors).load(text, path, (), (path.resolve(),))
    if errors:
        raise ConfigErrors(errors)
    return loaded


def load_file(path: Path | str) -> LoadedConfig:
    """Reads and loads one config file.

    Raises:
        ConfigErrors: when the file cannot be read or holds problems.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise ConfigErrors([ConfigError(Mark(path, 1, 1), "", f"cannot read config: {reason}")]) from None
    return load_text(text, path)
