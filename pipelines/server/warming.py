"""Loading what an agent's sessions share before the first person connects (``TypeInfo.prewarm`` hooks).

Each worker process warms its agents before it says it is ready; the
in-process server of ``serve``/``run`` (one worker) does the same, so the
first Connect is not kept waiting while models load and its first words are
not lost.
"""

import multiprocessing
import time

from loguru import logger

from pipelines.validate import Agent


def warm(agents: list[Agent]) -> None:
    """Loads what each agent's sessions share before the first session: every component type's ``prewarm`` hook.

    The built-in hooks load the shared Silero VAD and Smart Turn sessions
    (``llm_context``) and start a pocketsphinx STT's decoder host (a forked
    process holding the acoustic model) instead of on the first utterance.
    """
    from pipelines.builder import prewarm_agent  # pipecat: loaded only by a process that serves

    name = multiprocessing.current_process().name
    for agent in agents:
        at = time.monotonic()
        warmed = prewarm_agent(agent)
        logger.debug(f"{name}: prewarmed {agent.spec.name!r}: {', '.join(warmed) or 'nothing to load'}")
        logger.info(f"{name}: warmed {agent.spec.name!r} (its shared models loaded) in {time.monotonic() - at:.1f} s")
