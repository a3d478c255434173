"""What runtime settings an agent's services take: a change is checked here before it is accepted.

A ``PATCH /sessions/{id}`` names LLM and TTS settings by field name. pipecat
puts names its settings class does not declare into ``extra`` without a
word, and a value the service cannot use (an unknown voice, a rate of
"fast") is only noticed when the service next speaks: the bot goes silent.
So a change is checked against the services' real settings before anyone
is told it was accepted:

- the field must be one of the service's pipecat settings class
  (``EspeakTTSService.Settings``, ``LLMSettings``...); ``extra`` is not
  offered;
- a field the service's YAML params also declare (an espeak ``voice``,
  ``rate``, ``pitch``; an OpenAI ``model``, ``temperature``) is checked by
  that params model, ranges and known voices included, laid over the
  agent's own params;
- any other field is checked against the type its settings class declares.

``BadSettings`` names the field (``tts.rate``) and, for an unknown one, the
fields allowed for that agent's service.
"""

import dataclasses
import sys
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

#: Fields of pipecat's settings classes a runtime change may not set.
_NOT_OFFERED = {"extra"}


class BadSettings(ValueError):
    """A settings change the agent's services cannot take; ``field`` is its dotted name (``tts.rate``)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ServiceSettingsModel:
    """One service's runtime settings: its pipecat settings class and its YAML params.

    Attributes:
        kind: "llm" or "tts" (the key of the change).
        service: The processor id in the agent's YAML (named in errors).
        settings: The service's pipecat settings dataclass.
        params_model: The YAML params model of its type (None: none known).
        params: The agent's own params for it (what a change is laid over).
    """

    kind: str
    service: str
    settings: type
    params_model: type[BaseModel] | None = None
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def fields(self) -> list[str]:
        """The settings a change may name, sorted (those whose type can be checked)."""
        return sorted(name for name in _settings_hints(self.settings) if name not in _NOT_OFFERED)

    def check(self, values: Mapping[str, Any]) -> None:
        """Raises ``BadSettings`` for the first field of ``values`` the service cannot take."""
        allowed = set(self.fields)
        for key in values:
            if key not in allowed:
                raise BadSettings(
                    f"{self.kind}.{key}",
                    f"{self.kind}.{key}: not a setting of this agent's {self.kind} ({self.service!r}); "
                    f"allowed: {', '.join(self.fields)}",
                )
        declared = self.params_model.model_fields if self.params_model is not None else {}
        checked_by_params = {k: v for k, v in values.items() if k in declared}
        if checked_by_params:
            try:
                self.params_model.model_validate({**self.params, **checked_by_params})
            except ValidationError as e:
                for error in e.errors():
                    key = str(error["loc"][0]) if error["loc"] else ""
                    if key in checked_by_params:
                        raise BadSettings(f"{self.kind}.{key}", f"{self.kind}.{key}: {error['msg']}") from None
        hints = _settings_hints(self.settings)
        for key, value in values.items():
            if key in checked_by_params:
                continue
            try:
                TypeAdapter(hints[key]).validate_python(value)
            except ValidationError as e:
                raise BadSettings(f"{self.kind}.{key}", f"{self.kind}.{key}: {e.errors()[0]['msg']}") from None


@dataclass(frozen=True)
class SettingsModel:
    """An agent's runtime settings: its LLM's and its TTS's (None where it has none)."""

    llm: ServiceSettingsModel | None = None
    tts: ServiceSettingsModel | None = None

    def check(self, change: Any) -> None:
        """Raises ``BadSettings`` unless every field of ``change`` (a ``SettingsChange``) is one the agent takes."""
        for key in change.unknown:
            raise BadSettings(key, f"{key}: not a setting; a change takes {self.allowed()}")
        for kind in ("llm", "tts"):
            values = getattr(change, kind)
            if values is None:
                continue
            model = getattr(self, kind)
            if model is None:
                raise BadSettings(kind, f"{kind}: this agent has no {kind.upper()} whose settings could change")
            model.check(values)
        if change.system_prompt is not None and self.llm is None:
            raise BadSettings("system_prompt", "system_prompt: this agent has no LLM to prompt")

    def allowed(self) -> str:
        """The settings this agent takes, in words: ``llm (model, temperature, ...), tts (...), system_prompt``."""
        parts = [f"{kind} ({', '.join(model.fields)})" for kind in ("llm", "tts") if (model := getattr(self, kind))]
        return ", ".join(parts + ["system_prompt"] * (self.llm is not None))

    def usable(self, stored: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """The stored ``llm``/``tts`` settings the agent can take now, and why each other one was dropped.

        A change stored earlier (by an older config, before checks existed) is
        applied again on resume only if it still passes: one bad field must
        never break the session.
        """
        kept: dict[str, Any] = {}
        dropped: list[str] = []
        for kind in ("llm", "tts"):
            values = stored.get(kind)
            if not isinstance(values, Mapping) or not values:
                continue
            model = getattr(self, kind)
            good = {}
            for key, value in values.items():
                try:
                    if model is None:
                        raise BadSettings(kind, f"{kind}: this agent has no {kind.upper()}")
                    model.check({key: value})
                except BadSettings as e:
                    dropped.append(str(e))
                    continue
                good[key] = value
            if good:
                kept[kind] = good
        return kept, dropped


def _settings_hints(settings: type) -> dict[str, Any]:
    """The settings class's field types without pipecat's ``NotGiven``.

    Each annotation is resolved in the module of the class that declares it
    (pipecat writes them as strings). A field whose type cannot be resolved
    (pipecat imports some only for type checkers) is left out: it is not
    offered, since nothing could check a value for it.
    """
    declared: dict[str, tuple[Any, dict]] = {}
    for klass in reversed(settings.__mro__):
        module = sys.modules.get(klass.__module__)
        for name, annotation in vars(klass).get("__annotations__", {}).items():
            declared[name] = (annotation, vars(module) if module else {})
    hints: dict[str, Any] = {}
    for f in dataclasses.fields(settings):
        annotation, namespace = declared.get(f.name, (f.type, {}))
        if isinstance(annotation, str):
            try:
                annotation = eval(annotation, dict(namespace))  # noqa: S307 - the class's own annotation, as typing does
            except Exception:
                continue
        args = [a for a in typing.get_args(annotation) if getattr(a, "__name__", "") != "NotGiven"]
        if typing.get_origin(annotation) in (typing.Union, types.UnionType) and args:
            annotation = typing.Union[tuple(args)] if len(args) > 1 else args[0]  # noqa: UP007
        hints[f.name] = annotation
    return hints
