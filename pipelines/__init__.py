"""framegraph's framework: YAML loader, spec, registry, graph builder, runner, CLI and test kit.

The names below (``__all__``) are the public surface: what a plug-in (a
package of processor or transport types) and a test may import, from here
or from the module named beside each. Everything else under ``pipelines`` is
internal and may change without notice (docs/architecture.md). Each name is
imported on first use, so ``import pipelines`` stays light (no pipecat).
"""

import os as _os
from importlib import import_module as _import_module

#: Public names and the module holding each.
_EXPORTS = {
    # the plug-in contract (pipelines.registry, pipelines.spec)
    "TypeInfo": "pipelines.registry",
    "BuildContext": "pipelines.registry",
    "VideoOut": "pipelines.registry",
    "Servable": "pipelines.registry",
    "Prewarm": "pipelines.registry",
    "Params": "pipelines.spec",
    "ConfigFile": "pipelines.spec",
    # errors (pipelines.errors)
    "ConfigError": "pipelines.errors",
    "ConfigErrors": "pipelines.errors",
    "CannotStart": "pipelines.errors",
    "missing_extra": "pipelines.errors",
    "did_you_mean": "pipelines.errors",
    # what a transport builds on (pipelines.transport_contract)
    "AudioTransportParams": "pipelines.transport_contract",
    "ServedParams": "pipelines.transport_contract",
    "SDP_OFFER": "pipelines.transport_contract",
    "SOCKET": "pipelines.transport_contract",
    "peer_from": "pipelines.transport_contract",
    "video_io": "pipelines.transport_contract",
    # the output contract (pipelines.interruptions.output, pipelines.av_sync)
    "InterruptibleOutput": "pipelines.interruptions.output",
    "BufferedOutput": "pipelines.interruptions.output",
    "DroppedReport": "pipelines.interruptions.output",
    "AudioClockedOutput": "pipelines.av_sync",
    "RecordableFrame": "pipelines.av_sync",
    # running and testing an agent
    "run_worker": "pipelines.runner",
    "AgentHarness": "pipelines.testing",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(_import_module(_EXPORTS[name]), name)


if _os.environ.get("FRAMEGRAPH_LOG_LEVEL"):  # a worker process of a framegraph command: its one log level
    from pipelines.logs import configure_from_environment as _configure

    _configure()
