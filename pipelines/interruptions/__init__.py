"""The interruption guarantee and everything about interruptions (map: docs/interruptions.md).

- ``guard``: ``InterruptionGuard``, which the builder attaches to every graph:
  every processor flushes once, nothing stale is delivered after it.
- ``output``: the output contract, ``InterruptibleOutput.clear_buffer()``.
- ``policy``: when the user may interrupt (the YAML's ``interruptions`` block
  onto pipecat's turn start strategies, and ``InterruptionPolicy``).
- ``resume``: resuming the cut reply after a false interruption (``resume_after_secs``).
- ``tool_calls``: a tool call an interruption cancelled ends ``CANCELLED`` in the context.
- ``conformance``: the scenario ``framegraph check`` runs; ``check``: the command.
"""

from importlib import import_module

#: Public names and the module holding each; imported on first use, so that
#: ``framegraph``'s command list (which imports ``check``) does not load pipecat.
_EXPORTS = {
    "NEVER_STALE": "guard",
    "Interruption": "guard",
    "InterruptionGuard": "guard",
    "ProcessorStats": "guard",
    "guard_graph": "guard",
    "turn_free": "guard",
    "answering": "guard",
    "turn_of": "guard",
    "BufferedOutput": "output",
    "DroppedReport": "output",
    "InterruptibleOutput": "output",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
