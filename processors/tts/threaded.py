"""Streaming a synthesis that runs on a thread of its own (espeak-ng, Piper) into the event loop."""

import asyncio
import threading
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

#: Marks the end of a synthesis in the queue between a worker thread and the loop.
_END = object()


async def thread_stream(executor: ThreadPoolExecutor,
                        work: Callable[[Callable[[Any], None], threading.Event], None]) -> AsyncGenerator[Any, None]:
    """Runs ``work(emit, aborted)`` on ``executor``, yielding each item it emits as soon as it emits it.

    ``emit`` is safe to call from the worker thread. Closing or cancelling the
    generator sets ``aborted``: ``work`` should check it between steps and
    return. What ``work`` raises is raised here after its last item. Callers
    that re-yield its items close it with ``contextlib.aclosing``, so an abort
    reaches the thread at once rather than when the generator is collected.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    aborted = threading.Event()

    def emit(item) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the loop has closed: nobody is listening any more
            aborted.set()

    outcome = loop.run_in_executor(executor, work, emit, aborted)
    outcome.add_done_callback(lambda _: queue.put_nowait(_END))
    try:
        while (item := await queue.get()) is not _END:
            yield item
        outcome.result()  # raises what the thread raised
    finally:
        aborted.set()
        outcome.add_done_callback(consume_outcome)


def consume_outcome(future: asyncio.Future) -> None:
    """Retrieves an abandoned synthesis' outcome so asyncio does not warn about it."""
    if not future.cancelled():
        future.exception()
