"""YAML text to plain data, with a file:line:column mark for every key and value.

The loader is the only module that reads YAML. It expands ``${VAR}`` and
``${VAR:-default}`` from the environment in string scalars and resolves
``!include FILE`` relative to the including file, refusing any path that
leaves the folder of the top-level config.

A config is untrusted input: reading and expanding it is bounded (``LIMITS``),
and every problem, however malformed the file, comes back as a
``ConfigError`` with its file, line and column, never as another exception.
"""

import copy
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipelines.errors import ConfigError, ConfigErrors, Mark

INCLUDE_TAG = "!include"
MERGE_TAG = "tag:yaml.org,2002:merge"
_COLLECTION_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq", INCLUDE_TAG)
_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

Path_ = tuple[str | int, ...]
_FAILED = object()  # a scalar that could not be constructed (its error is recorded)


@dataclass(frozen=True)
class Limits:
    """Bounds on what one config, with its includes, may cost to load."""

    #: Bytes of YAML read: the config and all its included files together.
    max_bytes: int = 1024 * 1024
    #: Values (mappings, lists, scalars) parsed, and again after aliases and includes are expanded.
    max_values: int = 20_000
    #: Alias uses (``*name``) in all files together.
    max_aliases: int = 100
    #: ``!include`` expansions (a file included twice counts twice).
    max_includes: int = 50
    #: Nesting depth of mappings and lists, after expansion.
    max_depth: int = 64


LIMITS = Limits()


@dataclass
class LoadedConfig:
    """A config's data plus the marks that say where each part came from."""

    path: Path
    data: Any
    value_marks: dict[Path_, Mark] = field(default_factory=dict)
    key_marks: dict[Path_, Mark] = field(default_factory=dict)
    #: Paths of the scalars that ``${VAR}`` filled from the environment.
    env_paths: list[Path_] = field(default_factory=list)
    #: Those scalars as written, ``${VAR}`` and all (``with_markers``: errors never show the values).
    sources: dict[Path_, str] = field(default_factory=dict)

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

    def with_markers(self, markers: dict[str, str]) -> Any:
        """The data with each environment value replaced by its variable's marker (``{name: marker}``).

        Validating it gives the same errors with the marker where a validator
        inserted the value, so an error can print ``${VAR}`` in that place.
        A marker is a plain word, valid wherever the value was (inside a
        ``{placeholder}`` too, where ``${VAR}`` itself would not parse).
        """
        data = copy.deepcopy(self.data)
        for path, source in self.sources.items():
            text = _ENV_PATTERN.sub(lambda m: markers.get(m.group(1)) or m.group(2) or "", source)
            parent = data
            try:
                for step in path[:-1]:
                    parent = parent[step]
                parent[path[-1]] = text
            except (KeyError, IndexError, TypeError):  # a path a later duplicate or include replaced
                continue
        return data

    def env_inside(self, loc: Path_) -> tuple[tuple[str, str], ...]:
        """The ``(variable, value)`` pairs substituted from the environment at or under ``loc``."""
        loc = tuple(loc)
        pairs = (pair for path in self.env_paths if path[:len(loc)] == loc for pair in self.value_marks[path].env)
        return tuple(dict.fromkeys(pairs))


class _Refused(Exception):
    """A problem that stops loading the whole config (a limit crossed, an unreadable file)."""

    def __init__(self, mark: Mark, message: str):
        super().__init__(message)
        self.mark = mark
        self.message = message


@dataclass
class _Alias:
    """An alias use (``*name``), kept apart from its anchor so expansion knows where it was written."""

    target: yaml.Node
    name: str
    start_mark: yaml.Mark


class _Counts:
    """What loading has spent so far, against ``Limits``."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.bytes = self.parsed = self.aliases = 0


class _YAMLLoader(yaml.SafeLoader):
    """PyYAML's safe loader, composing within the limits and keeping alias uses visible."""

    def __init__(self, text: str, file: Path, counts: _Counts):
        super().__init__(text)
        self.file = file
        self.counts = counts
        self.depth = 0

    def _refuse(self, mark: yaml.Mark, message: str) -> None:
        raise _Refused(Mark(self.file, mark.line + 1, mark.column + 1), message)

    def compose_node(self, parent, index):
        limits, counts = self.counts.limits, self.counts
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            counts.aliases += 1
            if counts.aliases > limits.max_aliases:
                self._refuse(event.start_mark, f"more than {limits.max_aliases} aliases in this config")
            return _Alias(super().compose_node(parent, index), event.anchor, event.start_mark)
        counts.parsed += 1
        if counts.parsed > limits.max_values:
            self._refuse(event.start_mark, f"more than {limits.max_values} values in this config")
        self.depth += 1
        if self.depth > limits.max_depth:
            self._refuse(event.start_mark, f"nested deeper than {limits.max_depth} levels")
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


class _Composer:
    """Turns YAML nodes into Python values, recording marks and errors."""

    def __init__(self, root: Path, loaded: LoadedConfig, errors: list[ConfigError], limits: Limits):
        self.root = root
        self.loaded = loaded
        self.errors = errors
        self.counts = _Counts(limits)
        self.expanded = 0
        self.includes = 0
        #: Parsed files by resolved path: a file included many times is read and parsed once.
        self.documents: dict[Path, tuple[_YAMLLoader, yaml.Node | None]] = {}
        #: The outermost alias or include being expanded: where a limit crossed inside it is reported.
        self.expansion: Mark | None = None
        self.expanding: set[int] = set()

    def load(self, text: str, file: Path) -> Any:
        """Loads the top-level config text; limits crossed become one error at their mark."""
        try:
            self.counts.bytes += len(text.encode("utf-8", "surrogatepass"))
            loader, node = self._parse(text, file)
            if node is None:
                self.errors.append(ConfigError(Mark(file, 1, 1), "", "the file is empty"))
                return None
            return self._convert(loader, node, file, ())
        except _Refused as e:
            self.errors.append(ConfigError(e.mark, "", e.message))
            return None

    def _parse(self, text: str, file: Path) -> tuple[_YAMLLoader, yaml.Node | None]:
        """Parses one file's text (raises ``_Refused`` for malformed YAML or a crossed limit)."""
        limits = self.counts.limits
        if self.counts.bytes > limits.max_bytes:
            raise _Refused(Mark(file, 1, 1), f"more than {limits.max_bytes} bytes of YAML in this config and its includes")
        try:
            loader = _YAMLLoader(text, file, self.counts)
        except yaml.reader.ReaderError as e:
            raise _Refused(_text_mark(file, text, e.position), f"character {_codepoint(e.character)} is not allowed in YAML") from None
        try:
            return loader, loader.get_single_node()
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            where = Mark(file, mark.line + 1, mark.column + 1) if mark else Mark(file, 1, 1)
            raise _Refused(where, f"malformed YAML: {e.problem or e.context or 'cannot parse'}") from None
        finally:
            loader.dispose()

    def _mark(self, file: Path, node: yaml.Node | _Alias) -> Mark:
        return Mark(file, node.start_mark.line + 1, node.start_mark.column + 1)

    def _convert(self, loader, node, file, path) -> Any:
        limits = self.counts.limits
        if isinstance(node, _Alias):
            return self._expand(self._mark(file, node), f"alias *{node.name} contains itself", node.target,
                                lambda: self._convert(loader, node.target, file, path))
        self.expanded += 1
        if self.expanded > limits.max_values:
            raise _Refused(self.expansion or self._mark(file, node), f"expands to more than {limits.max_values} values")
        if len(path) > limits.max_depth:
            raise _Refused(self.expansion or self._mark(file, node), f"expands to more than {limits.max_depth} levels of nesting")
        self.loaded.value_marks[path] = self._mark(file, node)
        if node.tag == INCLUDE_TAG:
            return self._include(node, file, path)
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _COLLECTION_TAGS:
            self.errors.append(ConfigError(self._mark(file, node), _dotted(path), f"tag {node.tag} is not supported here"))
            return None
        if isinstance(node, yaml.MappingNode):
            return self._mapping(loader, node, file, path)
        if isinstance(node, yaml.SequenceNode):
            return [self._convert(loader, n, file, path + (i,)) for i, n in enumerate(node.value)]
        value = self._scalar(loader, node, file, path)
        if value is _FAILED:
            return None
        if isinstance(value, str):
            return self._interpolate(value, node, file, path)
        return value

    def _expand(self, mark: Mark, cycle: str, target: Any, convert) -> Any:
        """Runs ``convert`` for an alias or include; ``cycle`` is the error if ``target`` contains itself."""
        if id(target) in self.expanding:
            raise _Refused(mark, cycle)
        outermost = self.expansion is None
        if outermost:
            self.expansion = mark
        self.expanding.add(id(target))
        try:
            return convert()
        finally:
            self.expanding.discard(id(target))
            if outermost:
                self.expansion = None

    def _scalar(self, loader, node, file, path) -> Any:
        try:
            return loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as e:
            problem = e.problem or str(e)
        except (ValueError, OverflowError) as e:  # an implicit timestamp like 2024-13-45
            problem = f"cannot read this value: {e}"
        self.errors.append(ConfigError(self._mark(file, node), _dotted(path), problem))
        return _FAILED

    def _mapping(self, loader, node, file, path) -> dict:
        result: dict = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, _Alias):
                key_node = key_node.target
            if key_node.tag == MERGE_TAG:
                self.errors.append(ConfigError(self._mark(file, key_node), _dotted(path),
                                               "merge keys (<<) are not supported", "write the keys out, or use !include"))
                continue
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == INCLUDE_TAG:
                self.errors.append(ConfigError(self._mark(file, key_node), _dotted(path), "keys must be plain names"))
                continue
            key = self._scalar(loader, key_node, file, path)
            if key is _FAILED:
                continue
            key_mark = self._mark(file, key_node)
            if key is None or not isinstance(key, (str, int, float)):  # ~, !!binary, a date: said here, at the key
                kind = ("null (~)" if key is None else "binary data (!!binary)" if isinstance(key, bytes)
                        else f"a {type(key).__name__}")
                self.errors.append(ConfigError(key_mark, _dotted(path), f"keys must be plain names, not {kind}"))
                continue
            if key in result:
                self.errors.append(ConfigError(key_mark, _dotted(path + (key,)), "duplicate key"))
                continue
            self.loaded.key_marks[path + (key,)] = key_mark
            result[key] = self._convert(loader, value_node, file, path + (key,))
        return result

    def _include(self, node, file, path) -> Any:
        mark = self._mark(file, node)
        if not isinstance(node, yaml.ScalarNode) or not node.value:
            self.errors.append(ConfigError(mark, _dotted(path), "!include takes a file name"))
            return None
        name = str(node.value)
        try:
            target = (file.parent / name).resolve()
        except (OSError, RuntimeError, ValueError) as e:  # a NUL in the name, a symlink loop
            self.errors.append(ConfigError(mark, _dotted(path), f"!include {name}: not a usable file name ({e})"))
            return None
        if not target.is_relative_to(self.root):
            self.errors.append(ConfigError(mark, _dotted(path), f"!include {name} leaves the config's folder {self.root}"))
            return None
        self.includes += 1
        if self.includes > self.counts.limits.max_includes:
            raise _Refused(self.expansion or mark, f"more than {self.counts.limits.max_includes} includes")
        if target not in self.documents:
            try:
                text = read_config_text(target, self.counts.limits.max_bytes - self.counts.bytes)
            except _Unreadable as e:
                self.errors.append(ConfigError(e.mark or mark, _dotted(path), f"!include {name}: {e.reason}"))
                return None
            self.counts.bytes += len(text.encode("utf-8"))
            self.documents[target] = self._parse(text, target)
        loader, included = self.documents[target]
        if included is None:
            self.errors.append(ConfigError(mark, _dotted(path), f"!include {name}: the file is empty"))
            return None
        return self._expand(mark, f"!include {name} includes itself", included, lambda: self._convert(loader, included, target, path))

    def _interpolate(self, value: str, node, file: Path, path: Path_) -> str:
        mark = self._mark(file, node)
        used: list[tuple[str, str]] = []

        def replace(match: re.Match) -> str:
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                used.append((name, os.environ[name]))
                return os.environ[name]
            if default is not None:
                return default
            self.errors.append(
                ConfigError(mark, _dotted(path), f"environment variable {name} is not set", "use ${" + name + ":-default}")
            )
            return ""

        result = _ENV_PATTERN.sub(replace, value)
        if used:
            self.loaded.value_marks[path] = Mark(mark.file, mark.line, mark.column, env=tuple(used))
            self.loaded.env_paths.append(path)
            self.loaded.sources[path] = value
        return result


class _Unreadable(Exception):
    """A config file that cannot be read as UTF-8 YAML text within the limits."""

    def __init__(self, reason: str, mark: Mark | None = None):
        super().__init__(reason)
        self.reason = reason
        self.mark = mark


def read_config_text(path: Path, max_bytes: int) -> str:
    """Reads a config file as UTF-8 text, refusing what is not a regular file or is too large.

    The file is opened without blocking (a FIFO has no writer to wait for) and
    checked on the open descriptor, so ``/dev/zero``, a FIFO or a folder is
    refused instead of read forever.

    Raises:
        _Unreadable: with the reason (and, for bad UTF-8, the byte's mark).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (OSError, ValueError) as e:
        raise _Unreadable(f"cannot read: {getattr(e, 'strerror', None) or e}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _Unreadable("not a regular file")
    with os.fdopen(fd, "rb") as stream:
        data = stream.read(max(max_bytes, 0) + 1)
    if len(data) > max_bytes:
        raise _Unreadable(f"larger than the {max(max_bytes, 0)} bytes of YAML still allowed")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise _Unreadable(f"not UTF-8 text (byte 0x{data[e.start]:02x})", Mark(path, line, column)) from None


def _text_mark(file: Path, text: str, position: int) -> Mark:
    line = text.count("\n", 0, position) + 1
    return Mark(file, line, position - (text.rfind("\n", 0, position) + 1) + 1)


def _codepoint(character: str | int) -> str:
    return f"U+{character if isinstance(character, int) else ord(character):04X}"


def _dotted(path: Path_) -> str:
    return ".".join(str(p) for p in path)


def load_text(text: str, path: Path | str = "<text>", limits: Limits = LIMITS) -> LoadedConfig:
    """Loads config text; ``path`` names it in errors and anchors ``!include``.

    Raises:
        ConfigErrors: with every problem found.
    """
    path = Path(path)
    root = path.parent.resolve()
    loaded = LoadedConfig(path=path, data=None)
    errors: list[ConfigError] = []
    loaded.data = _Composer(root, loaded, errors, limits).load(text, path)
    if errors:
        raise ConfigErrors(errors)
    return loaded


def load_file(path: Path | str, limits: Limits = LIMITS) -> LoadedConfig:
    """Reads and loads one config file.

    Raises:
        ConfigErrors: when the file cannot be read or holds problems.
    """
    path = Path(path)
    try:
        text = read_config_text(path, limits.max_bytes)
    except _Unreadable as e:
        raise ConfigErrors([ConfigError(e.mark or Mark(path, 1, 1), "", f"cannot read config: {e.reason}")]) from None
    return load_text(text, path, limits)
