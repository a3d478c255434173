"""Whole-config validation: structure, types, params and graph rules.

Every problem is collected and reported at once with its file:line:column;
nothing is built from a config that has any.
"""

import re
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from pipelines.errors import ConfigError, ConfigErrors, Mark, did_you_mean, env_forms
from pipelines.loader import LoadedConfig, load_file, load_text
from pipelines.registry import Registry, TypeInfo, default_registry
from pipelines.spec import (
    CONTEXT_IDS,
    DEFAULT_CONTEXT_TYPE,
    INPUT,
    OUTPUT,
    RESERVED_IDS,
    TRANSPORT_IDS,
    AgentSpec,
    ContextBlock,
    Parallel,
    Params,
    Step,
    TypedBlock,
    step_ids,
)

#: Problems reported per config; a file with more is mostly noise, and each costs a lookup.
MAX_ERRORS = 100


@dataclass
class Component:
    """A declared block resolved to its registered type and validated params."""

    id: str
    type: TypeInfo
    params: Params


@dataclass
class Agent:
    """A validated agent: the spec, its resolved components and its pipeline."""

    spec: AgentSpec
    path: Path
    transport: Component
    context: Component | None
    processors: dict[str, Component]
    steps: list[Step]
    #: Valid but deprecated spellings (an old type name), one line each with its file:line:column; the CLI prints them.
    notes: list[ConfigError] = field(default_factory=list)

    @property
    def config_dir(self) -> Path:
        """The folder relative paths in params are resolved against."""
        return self.path.parent


class _Validator:
    def __init__(self, loaded: LoadedConfig, registry: Registry):
        self.loaded = loaded
        self.registry = registry
        self.errors: list[ConfigError] = []
        self.notes: list[ConfigError] = []
        self.unreported = 0
        #: Where path params must exist; None for text with no file behind it.
        self.config_dir = loaded.folder if loaded.path.is_file() else None

    def error(self, loc: tuple, message: str, hint: str = "", *, at_key: bool = False) -> None:
        if len(self.errors) >= MAX_ERRORS:
            self.unreported += 1
            return
        key = ".".join(str(p) for p in loc)
        mark = self.loaded.mark_for(loc, at_key=at_key)
        env = self.loaded.env_inside(loc)
        if mark and env:  # a block's error may quote any value inside it
            mark = replace(mark, env=env)
        self.errors.append(ConfigError(mark, key, message, hint))

    def pydantic_errors(self, exc: ValidationError, prefix: tuple, model: type[BaseModel] | None) -> None:
        for err in exc.errors():
            loc = prefix + tuple(err["loc"])
            if loc[-1] == "[key]":  # a mapping's key itself is wrong
                self.error(loc[:-1], _message(err["msg"]), at_key=True)
            elif err["type"] == "extra_forbidden":
                fields = _model_fields(model, err["loc"][:-1]) if model else []
                self.error(loc, "unknown key", did_you_mean(loc[-1], fields), at_key=True)
            elif err["type"] == "missing":
                self.error(loc, "required key is missing", at_key=False)
            else:
                self.error(loc, _message(err["msg"]))

    def run(self) -> Agent | None:
        data = self.loaded.data
        if not isinstance(data, dict):
            self.error((), "a config must be a mapping with version, name, transport, processors and pipeline")
            return None
        try:
            spec = AgentSpec.model_validate(data)
        except ValidationError as e:
            self.pydantic_errors(e, (), AgentSpec)
            self.check_parts(data, e)
            return None
        transport = self.component("transport", ("transport",), spec.transport, "transport")
        processors = self.processors(spec.processors)
        steps = self.steps(spec.pipeline, ("pipeline",), nested=False)
        context = self.context(spec, steps)
        self.graph_rules(spec, steps)
        if spec.conversation.idle is not None and context is None:
            self.error(("conversation", "idle"), "an idle check-in needs a context block (its user aggregator notices the silence)", at_key=True)
        self.degraded_params(spec, processors)
        if self.errors:
            return None
        return Agent(spec, self.loaded.path, transport, context, processors, steps, self.notes)

    def processors(self, blocks: dict[str, TypedBlock]) -> dict[str, Component]:
        """Each declared processor resolved to its type and validated params (reserved ids refused)."""
        processors = {}
        for pid, block in blocks.items():
            if pid in RESERVED_IDS:
                self.error(("processors", pid), f"'{pid}' is reserved for the transport or the context", at_key=True)
                continue
            component = self.component(pid, ("processors", pid), block, "processor")
            if component:
                processors[pid] = component
        return processors

    def check_parts(self, data: dict, failed: ValidationError) -> None:
        """After the spec's own structure failed, checks its parts that are whole, so every problem shows at once.

        A top-level key with an error of its own (an unknown key, a wrong
        ``version``) is left out, and so is a processor whose block is
        malformed; the transport, the other processors, the context and the
        pipeline are still checked. Graph rules run when the processors and
        the pipeline are both well formed, counting a malformed processor as
        declared, so a broken block never makes a false "not declared" error.
        """
        bad = {err["loc"][0] for err in failed.errors() if err["loc"]}
        bad_ids = {err["loc"][1] for err in failed.errors() if err["loc"][:1] == ("processors",) and len(err["loc"]) > 1}
        if "transport" not in bad:
            self.component("transport", ("transport",), TypedBlock.model_validate(data["transport"]), "transport")
        raw = data.get("processors", {}) if "processors" not in bad or bad_ids else None
        blocks = {pid: TypedBlock.model_validate(block) for pid, block in raw.items() if pid not in bad_ids} \
            if isinstance(raw, dict) else {}
        self.processors(blocks)
        if "pipeline" in bad or not isinstance(raw, dict):
            return
        steps = self.steps(data["pipeline"], ("pipeline",), nested=False)
        declared = {pid: blocks.get(pid) for pid in raw}
        if "context" not in bad:
            context = ContextBlock.model_validate(data["context"]) if data.get("context") is not None else None
            self.context(AgentSpec.model_construct(context=context), steps)
        self.graph_rules(AgentSpec.model_construct(processors=declared), steps)

    def component(self, cid: str, loc: tuple, block: TypedBlock, kind: str) -> Component | None:
        info = self.registry.get(kind, block.type)
        if info is None:
            hint = did_you_mean(block.type, self.registry.names(kind))
            self.error(loc + ("type",), f"unknown {kind} type '{block.type}'", hint)
            return None
        if info.name != block.type:  # an old name (TypeInfo.aliases): accepted, with a hint to rename it
            key = ".".join(str(p) for p in loc + ("type",))
            self.notes.append(ConfigError(self.loaded.mark_for(loc + ("type",)), key,
                                          f"'{block.type}' is deprecated: the {kind} type is now '{info.name}'",
                                          f"write type: {info.name}; the old name still works"))
        env_named = self.refuse_env_in_variable_names(loc, block.params)
        try:
            params = info.params.model_validate(block.params, context={"config_dir": self.config_dir})
        except ValidationError as e:
            self.pydantic_errors(e, loc, info.params)
            return None
        except Exception as e:  # a type's own validator failed (a plugin's bug): this config still gets its line
            self.error(loc, f"the {kind} type '{block.type}' failed checking these params ({type(e).__name__}: {e})")
            return None
        return None if env_named else Component(cid, info, params)

    def degraded_params(self, spec: AgentSpec, processors: dict[str, Component]) -> None:
        """Checks ``backpressure.degraded``: each id a declared processor, its params valid over the declared ones."""
        for pid, override in spec.backpressure.degraded.items():
            loc = ("backpressure", "degraded", pid)
            if pid not in spec.processors:
                self.error(loc, f"'{pid}' is not a declared processor", did_you_mean(pid, sorted(spec.processors)),
                           at_key=True)
            elif pid in processors:
                info = processors[pid].type
                try:
                    info.params.model_validate({**spec.processors[pid].params, **override},
                                               context={"config_dir": self.config_dir})
                except ValidationError as e:
                    self.pydantic_errors(e, loc, info.params)
                    continue
                for key in (k for k in override if k not in info.live_params):
                    live = ", ".join(info.live_params) or "none"
                    self.notes.append(ConfigError(
                        self.loaded.mark_for(loc + (key,), at_key=True), ".".join(loc + (key,)),
                        "reaches only sessions that start at DEGRADED; running ones keep theirs",
                        f"a running {info.name} takes these live: {live}"))

    def refuse_env_in_variable_names(self, loc: tuple, params: dict) -> bool:
        """Refuses ``${VAR}`` in a param that names a variable (``api_key_env``): it would hold a secret."""
        found = False
        for key in params:
            mark = self.loaded.value_marks.get(loc + (key,))
            if isinstance(key, str) and key.endswith("_env") and mark and mark.env:
                name = mark.env[0][0]
                self.error(loc + (key,), "must be the name of an environment variable, not its value",
                           f"write {key}: {name}; its value is not shown")
                found = True
        return found

    def context(self, spec: AgentSpec, steps: list[Step]) -> Component | None:
        used = [i for i in step_ids(steps) if i in CONTEXT_IDS]
        if spec.context is None:
            if not used:
                return None
            block = ContextBlock(type=DEFAULT_CONTEXT_TYPE)
        else:
            block = spec.context
            if not used:
                self.error(("context",), "context is declared but neither user_context nor assistant_context is in the pipeline", at_key=True)
        return self.component("context", ("context",), block, "context")

    def steps(self, raw: list[Any], loc: tuple, *, nested: bool) -> list[Step]:
        steps: list[Step] = []
        for i, item in enumerate(raw):
            if isinstance(item, str):
                steps.append(item)
            elif isinstance(item, dict) and set(item) == {"parallel"}:
                parallel = self.parallel(item["parallel"], loc + (i, "parallel"))
                if parallel:
                    steps.append(parallel)
            elif isinstance(item, dict):
                extra = sorted(set(item) - {"parallel"})
                self.error(loc + (i, extra[0] if extra else i), "a pipeline step is a processor id or {parallel: [[...], [...]]}",
                           did_you_mean(extra[0], ["parallel"]) if extra else "", at_key=bool(extra))
            else:
                self.error(loc + (i,), f"a pipeline step is a processor id or a parallel block, not {type(item).__name__}")
        return steps

    def parallel(self, raw: Any, loc: tuple) -> Parallel | None:
        if not isinstance(raw, list) or not all(isinstance(b, list) for b in raw):
            self.error(loc, "parallel takes a list of branches, each a list of steps")
            return None
        if len(raw) < 2:
            self.error(loc, "a parallel block needs at least two branches")
        empty = [i for i, b in enumerate(raw) if not b]
        if len(empty) > 1:
            self.error(loc + (empty[1],), "only one branch of a parallel block may be empty (it passes frames through)")
        return Parallel(branches=[self.steps(b, loc + (i,), nested=True) for i, b in enumerate(raw)])

    def graph_rules(self, spec: AgentSpec, steps: list[Step]) -> None:
        known = set(spec.processors) | set(RESERVED_IDS)
        seen: dict[str, tuple] = {}
        for pid, loc in _step_locs(steps, ("pipeline",)):
            if pid not in known:
                self.error(loc, f"'{pid}' is not a declared processor", did_you_mean(pid, sorted(known)))
            elif pid in seen:
                self.error(loc, f"'{pid}' appears twice in the pipeline (a processor has one place)")
            seen.setdefault(pid, loc)
            if pid in TRANSPORT_IDS and len(loc) > 2:
                self.error(loc, f"'{pid}' cannot be inside a parallel block")
        for pid in spec.processors:
            if pid not in seen:
                self.error(("processors", pid), f"processor '{pid}' is declared but never used in the pipeline", at_key=True)
        ends = [s for s in steps if not (isinstance(s, str) and s in CONTEXT_IDS)]
        if not ends or ends[0] != INPUT:
            self.error(("pipeline",), f"the pipeline must start at '{INPUT}' (the transport's input); context aggregators may come before it")
        if not ends or ends[-1] != OUTPUT:
            self.error(("pipeline",), f"the pipeline must end at '{OUTPUT}' (the transport's output); context aggregators may come after it")


def _message(msg: str) -> str:
    """A pydantic message in the style of ours: no "Value error, " prefix, lower-case start."""
    msg = msg.removeprefix("Value error, ")
    return msg[:1].lower() + msg[1:]


def _step_locs(steps: list[Step], loc: tuple):
    for i, step in enumerate(steps):
        if isinstance(step, Parallel):
            for b, branch in enumerate(step.branches):
                yield from _step_locs(branch, loc + (i, "parallel", b))
        else:
            yield step, loc + (i,)


def _model_fields(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names of the (nested) model at ``loc``, for did-you-mean hints."""
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        annotation = getattr(field, "annotation", None)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        elif isinstance(part, str) and part in model.model_fields:
            return []
    names = list(model.model_fields)
    return names + ["type"] if issubclass(model, Params) else names


def validate_loaded(loaded: LoadedConfig, registry: Registry | None = None) -> Agent:
    """Validates a loaded config.

    Raises:
        ConfigErrors: with every problem found.
    """
    registry = registry or default_registry()
    validator = _Validator(loaded, registry)
    agent = validator.run()
    validator.errors = _as_written(loaded, registry, validator.errors)
    if validator.unreported:
        more = f"{validator.unreported} more problems not shown (fix these first)"
        validator.errors.append(ConfigError(Mark(loaded.path, 1, 1), "", more))
    if validator.errors or agent is None:
        raise ConfigErrors(validator.errors)
    return agent


def _as_written(loaded: LoadedConfig, registry: Registry, errors: list[ConfigError]) -> list[ConfigError]:
    """``errors`` whose text would show a value from the environment, each with ``${VAR}`` where the value was.

    The config is validated again with a random marker in place of each
    variable's value (``LoadedConfig.with_markers``): of the value's shape
    (letters for letters, digits for digits, the rest kept) when it is long
    enough to be found again without doubt, else a plain word. An error at the
    same key whose message, with the values put back for the markers, is the
    same message (ignoring case: validators may lower it) is its twin, and the
    twin's message is printed with ``${VAR}`` for each marker. Without a twin,
    ``ConfigError`` prints a message without the value.
    """
    hiding = [e for e in errors if e.mark and e.mark.env and e.mark.shows_env(f"{e.message}\n{e.hint}")]
    if not hiding:
        return errors
    values = {name: value for e in hiding for name, value in e.mark.env}
    markers = {name: _marker(value, i) for i, (name, value) in enumerate(sorted(values.items()))}
    again = _Validator(replace(loaded, data=loaded.with_markers(markers)), registry)
    again.run()
    twins: dict[str, list[ConfigError]] = {}
    for twin in again.errors:
        twins.setdefault(twin.key, []).append(twin)
    # Each marker as validators may quote it (env_forms), longest first, mapped back to its variable.
    quoted = {form.lower(): name for name, m in markers.items() for form in env_forms(m)}
    found = re.compile("|".join(map(re.escape, sorted(quoted, key=len, reverse=True))), re.IGNORECASE)

    def put_back(text: str, form: int) -> str:
        """``text`` with each marker replaced by its value, in the ``form``-th way validators quote it."""
        def value(match: re.Match) -> str:
            forms = env_forms(values[quoted[match.group().lower()]])
            return forms[min(form, len(forms) - 1)]

        return found.sub(value, text)

    def twin_of(text: str, written: str) -> bool:
        text = _SUGGESTION.sub("", text).lower()
        return any(_SUGGESTION.sub("", put_back(written, form)).lower() == text for form in range(3))

    def shown(text: str) -> str:
        # A "did you mean" made from the value (or the marker) would tell about the value: dropped.
        return found.sub(lambda m: "${" + quoted[m.group().lower()] + "}", _SUGGESTION.sub("", text))

    result = []
    for error in errors:
        twin = next((t for t in twins.get(error.key, []) if twin_of(error.message, t.message)), None) \
            if error in hiding else None
        if twin is None:
            result.append(error)
            continue
        hint = shown(twin.hint) if twin_of(error.hint, twin.hint) else ""
        result.append(ConfigError(error.mark, error.key, shown(twin.message), hint, as_written=True))
    return result


#: A did-you-mean suggestion at the end of a message.
_SUGGESTION = re.compile(r" \(did you mean '[^']*'\?\)$")
#: Values with at least this many letters and digits get a marker of their own shape; others a plain word
#: (a marker must be findable without doubt, and differ from its value).
_SHAPED_MARKER_MIN = 8


def _marker(value: str, index: int) -> str:
    """A random stand-in for ``value`` in ``LoadedConfig.with_markers`` (see ``_as_written``)."""
    rng = secrets.SystemRandom()
    if sum(c.isalnum() for c in value) < _SHAPED_MARKER_MIN:
        return f"fgenv{secrets.token_hex(4)}x{index}"

    def like(c: str) -> str:
        if c.isdigit():
            return rng.choice("0123456789")
        if c.isalpha():
            letter = rng.choice("abcdefghijklmnopqrstuvwxyz")
            return letter.upper() if c.isupper() else letter
        return c

    return "".join(map(like, value))


def load_agent(path: Path | str, registry: Registry | None = None) -> Agent:
    """Loads and validates an agent file."""
    return validate_loaded(load_file(path), registry)


def load_agent_text(text: str, path: Path | str = "<text>", registry: Registry | None = None) -> Agent:
    """Loads and validates agent text; ``path`` names it in errors."""
    return validate_loaded(load_text(text, path), registry)
