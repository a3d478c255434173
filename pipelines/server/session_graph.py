"""The server's session-graph step: a session's graph is the YAML's (``pipelines.builder``) with what serving adds.

- pipecat's RTVI processor first, its observer on the worker, the greeting on
  the client's ``client-ready`` (``pipelines.client_protocol.rtvi.for_client``,
  which a transport with its own ``serve``, such as Daily, adds too);
- the settings gate right after the top-level LLM (``settings_gate``), so a
  runtime settings change (``PATCH /sessions/{id}``) waits for the running
  response to end (``pipelines.sessions.settings_gate``).
"""

from typing import Any

from pipecat.processors.frame_processor import FrameProcessor
from pipecat.services.llm_service import LLMService
from pipecat.services.settings import LLMSettings, TTSSettings
from pipecat.services.tts_service import TTSService

from pipelines.builder import BuiltAgent, GraphParts, build_agent
from pipelines.client_protocol.rtvi import for_client
from pipelines.registry import default_registry
from pipelines.sessions.settings_gate import SettingsGate
from pipelines.sessions.settings_model import ServiceSettingsModel, SettingsModel
from pipelines.validate import Agent, Component


def session_graph(agent: Agent, peer: Any, memory: Any = None) -> BuiltAgent:
    """``agent`` built around the accepted connection ``peer`` as the server runs a session of it."""
    return build_agent(agent, peer=peer, memory=memory, additions=(settings_gate, for_client))


def settings_model(agent: Agent) -> SettingsModel:
    """What runtime settings ``agent``'s services take, learnt from a build on the synthetic transport (no session)."""
    synthetic = default_registry().get("transport", "synthetic")
    built = build_agent(agent, transport=Component("transport", synthetic, synthetic.params()), additions=(settings_gate,))
    return built.settings_gate.model if built.settings_gate is not None else SettingsModel()


def settings_gate(parts: GraphParts) -> None:
    """Places a ``SettingsGate`` right after the graph's top-level LLM; a graph without one is left as it is."""
    llms = [i for i, p in enumerate(parts.steps) if isinstance(p, LLMService)]
    if not llms:
        return
    llm = parts.steps[llms[0]]
    tts = next((p for p in parts.processors.values() if isinstance(p, TTSService)), None)
    parts.settings_gate = SettingsGate(
        context=parts.llm_context,
        speaks=tts is not None,
        llm_settings=getattr(type(llm), "Settings", LLMSettings),
        tts_settings=getattr(type(tts), "Settings", TTSSettings),
        model=SettingsModel(llm=_service_settings(parts, "llm", llm, LLMSettings),
                            tts=_service_settings(parts, "tts", tts, TTSSettings) if tts is not None else None),
        name="settings_gate",
    )
    parts.steps.insert(llms[0] + 1, parts.settings_gate)


def _service_settings(parts: GraphParts, kind: str, service: FrameProcessor, default: type) -> ServiceSettingsModel:
    """What runtime settings ``service`` takes: its settings class and, when it is a config's processor, its params."""
    pid = next((pid for pid, p in parts.processors.items() if p is service), service.name)
    component = parts.agent.processors.get(pid)
    return ServiceSettingsModel(
        kind, pid, getattr(type(service), "Settings", default),
        params_model=component.type.params if component is not None else None,
        params=component.params.model_dump() if component is not None else {},
    )
