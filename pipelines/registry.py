"""The registry of processor, transport and context types: the plug-in contract.

A type is a name, a pydantic params model and a factory. Built-in modules
(``pipelines.builtins``) and third-party packages export ``TYPES`` lists of
``TypeInfo``; a package registers its list under the entry point group
``framegraph.types`` (``[project.entry-points."framegraph.types"] NAME =
"package.module:TYPES"``). A config can only name a registered type, so it
never imports code of its own choosing. This module and pydantic are all a
plug-in needs to know; it imports nothing heavy, so configs validate without
loading pipecat's services.

The contract:

- ``params``: a ``pipelines.spec.Params`` subclass. Unknown keys and wrong
  types in the config are errors at load time, with file:line:column.
- ``factory(params, ctx) -> object`` (``Factory``): called once per build
  with the validated params and a ``BuildContext``. A ``processor`` factory
  returns a pipecat ``FrameProcessor`` (name it ``ctx.processor_id``); a
  ``transport`` factory returns a pipecat ``BaseTransport`` whose ``input()``
  and ``output()`` are the pipeline's ends, and whose output implements
  ``pipelines.interruptions.InterruptibleOutput`` (subclass ``BufferedOutput``)
  so an interruption clears its buffers; a ``context`` factory returns a
  pipecat ``LLMContextAggregatorPair``.
- ``serve(agent, options) -> None`` (``Serve``, transports only): for a
  transport that runs many participants or owns its own loop; ``framegraph
  run`` awaits it instead of running one worker (a ``servable`` transport
  needs none: the agent server serves it). It builds each participant's
  graph with ``build_agent(agent, peer=CONNECTION)``, and the factory finds the
  connection in ``ctx.peer``.
- ``prewarm(params, ctx) -> None`` (``Prewarm``, optional): loads what the
  type's components share (a model, a helper process) before the first
  session; the server's worker processes call it at start.
- ``video_out() -> VideoOut | None`` (optional, on a processor's params): the
  video the processor draws into the agent's output (the avatar's face). The
  builder hands the first one to the transport factory as ``ctx.video_out``;
  a transport that carries video enables its video out at that size and rate.

Naming rules (``tests/test_registry.py`` keeps them):

- A type name is lower-case words joined by ``_``. A speech or language
  service (the types of ``processors.stt``, ``llm``, ``tts``, ``local`` and
  ``services``) is named ``<engine>_<stt|llm|tts>`` (``espeak_tts``,
  ``deepgram_stt``, ``openai_llm``); other types are named for what they do
  (``passthrough``, ``avatar``, ``webrtc``, ``llm_context``).
- A type's factory is ``make_<type name>`` (``make_espeak_tts``,
  ``make_llm_context``), a transport's ``make_<type name>_transport``, and its
  serve ``serve_<type name>`` or the shared ``serve``; trivial factories may be
  lambdas in the ``TYPES`` list.
- A renamed type lists its old names in ``aliases``: a config that uses one
  still validates, with a note naming the new name (``Agent.notes``).
"""

from collections.abc import Iterable
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pipelines.spec import AgentSpec, Params

if TYPE_CHECKING:
    from pipelines.validate import Agent

ENTRY_POINT_GROUP = "framegraph.types"
KINDS = ("processor", "transport", "context", "tool")


@dataclass(frozen=True)
class VideoOut:
    """The video a processor draws into the agent's output: frame size and rate."""

    width: int
    height: int
    fps: int


@dataclass(frozen=True)
class BuildContext:
    """What a factory may know about the agent it is building for.

    Attributes:
        spec: the whole validated agent spec.
        config_dir: the config file's folder (resolve relative paths against it).
        processor_id: the config id of the component being built (``input``/``output``'s transport id for transports).
        audio_in_sample_rate: the transport's input rate (Hz).
        audio_out_sample_rate: the transport's output rate (Hz).
        peer: the connection a ``serve`` accepted for this participant (a
            SmallWebRTC connection, a WebSocket, a Daily room), or None when
            the agent is not being built for a served participant.
        video_out: the video a processor of the agent draws (``VideoOut``), or
            None when none does; transports that carry video enable it with this.
        memory: the session user's memory (``pipelines.sessions.memory.SessionMemory``)
            for an agent with a ``memory:`` block, or None (no user, no block).
    """

    spec: AgentSpec
    config_dir: Path
    processor_id: str
    audio_in_sample_rate: int
    audio_out_sample_rate: int
    peer: Any = None
    video_out: VideoOut | None = None
    memory: Any = None


class Factory(Protocol):
    """Builds one component from its validated params (see the module docstring)."""

    def __call__(self, params: Any, ctx: BuildContext, /) -> Any: ...


@dataclass(frozen=True)
class Servable:
    """How the agent server (``pipelines.server``) connects a participant to a transport it serves.

    A transport type with a ``servable`` descriptor can be served by
    ``framegraph serve``; the server reads only this, never the type's name.

    Attributes:
        signalling: ``"sdp-offer"``: the client posts an SDP offer over HTTP
            and the server answers it (trickled ICE candidates follow); the
            factory gets the accepted peer connection (SmallWebRTC).
            ``"socket"``: the client opens a WebSocket and the factory gets
            the accepted socket as it is (its serializer is the transport's).
    """

    signalling: str


class Serve(Protocol):
    """Runs a served transport's agent: accepts participants and builds a graph for each."""

    async def __call__(self, agent: "Agent", options: Any, /) -> None: ...


class Prewarm(Protocol):
    """Loads what a type's components share, once per process, before the first is built (see ``TypeInfo``)."""

    def __call__(self, params: Any, ctx: BuildContext, /) -> None: ...


@dataclass(frozen=True)
class TypeInfo:
    """A registered type: what ``type: NAME`` means in a config.

    Attributes:
        kind: "processor", "transport" or "context".
        name: what the config's ``type:`` says.
        params: the pydantic model of the component's params.
        factory: ``factory(params, ctx)``, see ``Factory``.
        summary: one line for ``framegraph list``.
        serve: transports that own their loop (daily, file): awaited by
            ``framegraph run`` instead of one worker; ``options`` are the run
            options (``pipelines.runner.RunOptions``: host, port, realtime).
            A servable transport needs none: ``framegraph run`` serves it
            with the agent server, as ``framegraph serve`` does.
        servable: how the agent server connects a participant to this
            transport (see ``Servable``); None when it cannot be served.
        prewarm: ``prewarm(params, ctx)`` (optional): loads what every
            component of this type shares (a model session, a helper
            process) so the first session does not wait for it; the server's
            worker processes call it for each component of their agents
            before they serve (``Prewarm``).
        aliases: old names of this type; configs using one still validate,
            with a deprecation note. ``framegraph list`` shows the name only.
        live_params: the params a running component takes when the load
            level retunes it (``pipelines.pressure.Retunable``); the other
            keys of an agent's ``backpressure.degraded`` block reach only
            sessions that start at DEGRADED (validation notes each).
    """

    kind: str
    name: str
    params: type[Params]
    factory: Factory
    summary: str
    serve: Serve | None = None
    servable: Servable | None = None
    prewarm: "Prewarm | None" = None
    aliases: tuple[str, ...] = ()
    live_params: tuple[str, ...] = ()


class Registry:
    """Types by kind and name."""

    def __init__(self, types: Iterable[TypeInfo] = ()):
        self._types: dict[str, dict[str, TypeInfo]] = {kind: {} for kind in KINDS}
        self._aliases: dict[str, dict[str, str]] = {kind: {} for kind in KINDS}
        for info in types:
            self.add(info)

    def add(self, info: TypeInfo) -> None:
        """Registers a type and its old names; a name (or old name) taken twice in one kind is an error."""
        if info.kind not in KINDS:
            raise ValueError(f"type {info.name}: kind must be one of {KINDS}, not {info.kind!r}")
        for name in (info.name, *info.aliases):
            if name in self._types[info.kind] or name in self._aliases[info.kind]:
                raise ValueError(f"{info.kind} type {name!r} is registered twice")
        self._types[info.kind][info.name] = info
        self._aliases[info.kind].update(dict.fromkeys(info.aliases, info.name))

    def get(self, kind: str, name: str) -> TypeInfo | None:
        """Returns the type (``name`` may be an old name of it), or None when no such type is registered."""
        return self._types[kind].get(self._aliases[kind].get(name, name))

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
