"""pipecat's STT, TTS and LLM services as processor types, from the generated catalogue.

Each catalogue entry (``catalogue.json``, written by
:mod:`processors.services.generate`) becomes a type whose params model has:

- the service's constructor parameters whose annotations YAML can express
  (strings, numbers, booleans, ``Literal``, lists and mappings; ``Language``
  as its code, e.g. ``en-US``), each optional unless pipecat requires it, so
  a param left out keeps pipecat's own default;
- ``settings:``, the fields of the service's ``Settings`` dataclass;
- ``api_key`` where the service takes one, read from ``PROVIDER_API_KEY``
  when not given, and never printed;
- ``tools:`` for LLMs (docs/tools.md).

Validation checks, without importing the provider's SDK, that the pip extra
is installed (``importlib.util.find_spec``) and that a required key is set,
each as one line naming the extra or the variable. The factory imports the
service only when an agent is built.
"""

import ast
import json
import os
import re
from functools import cache
from importlib.metadata import version
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, create_model, field_validator, model_validator

from pipelines.errors import ConfigError, ConfigErrors
from pipelines.registry import TypeInfo
from pipelines.spec import Params
from processors.services.introspect import api_key_env
from processors.tools.params import ToolParams, unique_names

CATALOGUE = Path(__file__).resolve().parent / "catalogue.json"
_SIMPLE = {"str": str, "int": int, "float": float, "bool": bool, "Any": Any, "Language": str}
_CONTAINERS = {"list": list, "List": list, "dict": dict, "Dict": dict, "Mapping": dict, "Sequence": list}
#: Annotation parts that only say "not given" and map to an optional param.
_ABSENT = {"None", "NotGiven", "NoneType", "OpenAINotGiven"}
#: A constructor parameter the factory fills itself: the HTTP session some services require.
_SESSION = "aiohttp.ClientSession"


def yaml_type(annotation: str) -> Any | None:
    """The Python type a YAML value must have for ``annotation``, or None if YAML cannot express it."""
    try:
        node = ast.parse(annotation, mode="eval").body
    except SyntaxError:
        return None
    return _node_type(node)


def _union_parts(node: ast.expr) -> list[ast.expr]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _union_parts(node.left) + _union_parts(node.right)
    if isinstance(node, ast.Subscript) and ast.unparse(node.value) in ("Optional", "Union"):
        inner = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        return [part for element in inner for part in _union_parts(element)] + (
            [ast.Name("None")] if ast.unparse(node.value) == "Optional" else [])
    return [node]


def _node_type(node: ast.expr) -> Any | None:
    parts = [p for p in _union_parts(node) if ast.unparse(p) not in _ABSENT]
    if len(parts) != 1:
        types = [_node_type(p) for p in parts]
        return None if not types or None in types else Any
    part = parts[0]
    text = ast.unparse(part)
    if text in _SIMPLE:
        return _SIMPLE[text]
    if isinstance(part, ast.Subscript):
        head = ast.unparse(part.value)
        if head == "Literal":
            elements = part.slice.elts if isinstance(part.slice, ast.Tuple) else [part.slice]
            try:
                return Literal[tuple(ast.literal_eval(e) for e in elements)]
            except ValueError:
                return None
        if head in _CONTAINERS:
            return _CONTAINERS[head]
    if text in _CONTAINERS:
        return _CONTAINERS[text]
    return None


def _default_text(default: str | None) -> str:
    return "required" if default is None else f"pipecat's default {default}"


def _is_installed(module: str) -> bool:
    """Whether ``module`` (one or two dotted levels) can be imported, without importing the package itself.

    A namespace package's top level (``google``) says nothing; its second
    level (``google.genai``) does, and finding it imports only the namespace.
    """
    top, _, rest = module.partition(".")
    spec = find_spec(top)
    if spec is None:
        return False
    if spec.origin not in (None, "namespace") or not rest:
        return True
    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_requirement(entry: dict) -> str | None:
    """The one-line message for a type whose pip extra is not installed, or None."""
    missing = [m for m in entry["requires"] if not _is_installed(m)]
    if not missing:
        return None
    pin = f"=={version('pipecat-ai')}"
    return (f"needs pipecat-ai's '{entry['extra']}' extra (missing {missing[0]}): "
            f"pip install 'pipecat-ai[{entry['extra']}]{pin}'")


#: Ranges of the numeric params and settings that many services share, by name:
#: a value outside them is a config error at validation, not a provider's 400 at run time.
KNOWN_RANGES: dict[str, tuple[float, float]] = {
    "temperature": (0, 2), "top_p": (0, 1), "top_k": (0, 1000), "min_p": (0, 1),
    "presence_penalty": (-2, 2), "frequency_penalty": (-2, 2), "repetition_penalty": (0, 10),
    "seed": (0, 2**63 - 1), "max_tokens": (1, 10_000_000), "max_completion_tokens": (1, 10_000_000),
    "sample_rate": (8000, 192000), "channels": (1, 8), "num_channels": (1, 8), "audio_channel_count": (1, 8),
    "speed": (0.1, 10), "speaking_rate": (0.1, 10), "stability": (0, 1), "similarity_boost": (0, 1),
}
#: Every other numeric param: never negative (durations, counts, sizes, thresholds), and finite;
#: the provider checks its own narrower range when the agent runs.
DEFAULT_RANGE = (0, 1_000_000_000)


def _range(name: str, annotation: Any) -> dict[str, float]:
    """``ge``/``le`` for a numeric param (from its name: ``KNOWN_RANGES``, else ``DEFAULT_RANGE``); none for others."""
    if annotation not in (int, float):
        return {}
    low, high = KNOWN_RANGES.get(name, DEFAULT_RANGE)
    return {"ge": low, "le": high}


def _settings_model(name: str, entry: dict):
    fields = {}
    for field in entry["settings"]:
        annotation = yaml_type(field["annotation"])
        fields[field["name"]] = (annotation | None if annotation is not None else Any,
                                 Field(None, description=field["description"] or None,
                                       **_range(field["name"], annotation)))
    return create_model(f"{_camel(name)}Settings", __base__=Params, **fields)


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _doc(name: str, entry: dict) -> str:
    """The params model's docstring: what ``framegraph list TYPE`` prints above the params."""
    lines = [f"pipecat's {entry['class']} ({entry['module']})."]
    if entry["extra"]:
        lines.append(f"Extra: pip install 'pipecat-ai[{entry['extra']}]'.")
    if entry["api_key"]:
        lines.append(f"API key: {api_key_env(entry)}" + (" (optional)." if entry["api_key"] == "optional" else "."))
    settings = [f"{s['name']}" for s in entry["settings"]]
    if settings:
        lines.append("settings: " + ", ".join(settings) + ".")
    skipped = [p["name"] for p in entry["params"] if yaml_type(p["annotation"]) is None and p["annotation"] != _SESSION]
    if skipped:
        lines.append("Not settable from YAML (Python objects): " + ", ".join(skipped) + ".")
    return "\n".join(lines)


def params_model(name: str, entry: dict):
    """The pydantic params model of a catalogue type."""
    fields: dict[str, Any] = {}
    for param in entry["params"]:
        annotation = yaml_type(param["annotation"])
        if annotation is None or param["name"] in ("settings", "tools"):
            continue
        required = param["default"] is None
        description = " ".join(filter(None, [param["description"], f"({_default_text(param['default'])})"]))
        fields[param["name"]] = (annotation if required else annotation | None,
                                 Field(... if required else None, description=description,
                                       **_range(param["name"], annotation)))
    if entry["api_key"]:
        fields["api_key"] = (SecretStr | None, Field(None, description=f"default: ${{{api_key_env(entry)}}}"))
    if entry["settings"]:
        fields["settings"] = (_settings_model(name, entry) | None, Field(None, description="the service's Settings fields"))
    validators: dict[str, Any] = {"__check_environment": model_validator(mode="after")(_environment_check(entry))}
    if entry["kind"] == "llm":
        fields["tools"] = (list[ToolParams], Field(default_factory=list, description="functions the LLM may call (docs/tools.md)"))
        validators["_unique_tools"] = field_validator("tools")(unique_names)
    model = create_model(f"{_camel(name)}Params", __base__=Params, __validators__=validators, **fields)
    model.__doc__ = _doc(name, entry)
    return model


def _environment_check(entry: dict):
    """A model validator: the extra is installed and a required key is given or set."""

    def check(self):
        if (problem := missing_requirement(entry)) is not None:
            raise ValueError(problem)
        if entry["api_key"] == "required" and self.api_key is None and not os.environ.get(api_key_env(entry)):
            raise ValueError(f"set {api_key_env(entry)} (or give api_key: ${{YOUR_VAR}})")
        return self

    return check


def _language(value: Any):
    from pipecat.transcriptions.language import Language

    try:
        return Language(value)
    except ValueError:
        return value  # pipecat services also take provider-specific codes as plain strings


def factory(name: str, entry: dict):
    """The build function of a catalogue type: imports the service now, never at validation."""
    language_params = {p["name"] for p in entry["params"] if "Language" in p["annotation"]}
    session_params = [p["name"] for p in entry["params"] if p["annotation"] == _SESSION and p["default"] is None]
    language_settings = {s["name"] for s in entry["settings"] if "Language" in s["annotation"]}

    def build(params, ctx):
        from importlib import import_module

        from pipelines.errors import missing_extra
        from processors.tools.runtime import install_tools

        key = f"processors.{ctx.processor_id}"
        try:
            cls = getattr(import_module(entry["module"]), entry["class"])
        except ImportError as e:
            raise missing_extra(key, entry["extra"] or "", e, note="a pipecat-ai extra") from None
        given = params.model_dump(exclude_none=True, exclude={"api_key", "settings", "tools"})
        kwargs = {k: _language(v) if k in language_params else v for k, v in given.items()}
        if entry["api_key"]:
            secret = params.api_key.get_secret_value() if params.api_key else os.environ.get(api_key_env(entry))
            if secret:
                kwargs["api_key"] = secret
        if getattr(params, "settings", None) is not None:
            values = params.settings.model_dump(exclude_none=True)
            values = {k: _language(v) if k in language_settings else v for k, v in values.items()}
            kwargs["settings"] = cls.Settings(**values)
        if entry["accepts_kwargs"]:
            kwargs["name"] = ctx.processor_id
        session = _http_session() if session_params else None
        kwargs.update({name: session for name in session_params})
        try:
            service = cls(**kwargs)
        except Exception as e:  # a provider client refusing its arguments (e.g. no key) is a config problem
            raise ConfigErrors([ConfigError(None, key, f"{entry['class']}: {_redact(str(e), kwargs.get('api_key'))}")]) from None
        if session is not None:
            _close_with(service, session)
        if entry["kind"] == "llm":
            install_tools(service, params.tools, ctx)
        return service

    build.__name__ = build.__qualname__ = f"make_{name}"  # the registry's naming rule, as a hand-written factory has
    return build


def _http_session():
    """The aiohttp session a service requires (agents are built inside their event loop)."""
    import aiohttp

    return aiohttp.ClientSession()


def _close_with(service, session) -> None:
    """Closes ``session`` when the service is cleaned up at the end of its pipeline."""
    cleanup = service.cleanup

    async def cleanup_and_close():
        try:
            await cleanup()
        finally:
            await session.close()

    service.cleanup = cleanup_and_close


def _redact(text: str, secret: str | None) -> str:
    """``text`` without the API key in it (errors are printed)."""
    return text.replace(secret, "***") if secret else text


@cache
def catalogue() -> dict:
    """The generated catalogue (types and what was left out)."""
    return json.loads(CATALOGUE.read_text())


def _summary(entry: dict) -> str:
    extra = f" [pipecat-ai[{entry['extra']}]]" if entry["extra"] else ""
    first = re.split(r"(?<=\.)\s", entry["summary"], maxsplit=1)[0]
    return f"{first}{extra}"


TYPES = [
    TypeInfo("processor", name, params_model(name, entry), factory(name, entry), _summary(entry))
    for name, entry in catalogue()["types"].items()
]
