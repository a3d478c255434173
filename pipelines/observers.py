"""Several pipecat observers behind one: one queue per worker instead of one per observer.

pipecat's ``WorkerObserver`` gives each observer of a worker its own queue
and task, and puts an event on every one of them for each frame a processor
processes and each push between two processors: with the client protocol's
observer, the server's latency observer and pipecat's turn tracker, five
queue hand-offs (and task wake-ups) per frame per hop, a large share of a
talking session's event-loop time (bench/load.py under py-spy). The
observers a framegraph worker carries are cheap and never block, so they
ride on one: a ``Companions`` observer handles each event itself, then hands
it to its companions in order, each with the events it asked for (a repeated
push only reaches those that observe every push; a processed frame only
those that handle it).

The host is the client protocol's observer when the graph has one (pipecat's
worker must find its ``RTVIObserver`` among the observers it is given, or it
never says bot-ready), else a bare ``FanOut``.
"""

from pipecat.observers.base_observer import BaseObserver, FrameProcessed, FramePushed, ProcessorSetUp


class Companions:
    """Mixin for an observer (list it first): also hands every event to companion observers."""

    _companions: tuple[BaseObserver, ...] = ()
    _every_push: tuple[BaseObserver, ...] = ()
    _processed: tuple[BaseObserver, ...] = ()

    def add_companions(self, observers: list[BaseObserver]) -> None:
        """Observers that get this one's events after it, in this order."""
        self._companions = (*self._companions, *observers)
        self._every_push = tuple(o for o in self._companions if o.observe_every_push)
        self._processed = tuple(
            o for o in self._companions if type(o).on_process_frame is not BaseObserver.on_process_frame
        )

    async def setup(self, task_manager):
        await super().setup(task_manager)
        for observer in self._companions:
            await observer.setup(task_manager)

    async def cleanup(self):
        await super().cleanup()
        for observer in self._companions:
            await observer.cleanup()

    async def on_pipeline_started(self):
        await super().on_pipeline_started()
        for observer in self._companions:
            await observer.on_pipeline_started()

    async def on_processor_setup(self, data: ProcessorSetUp):
        await super().on_processor_setup(data)
        for observer in self._companions:
            await observer.on_processor_setup(data)

    async def on_process_frame(self, data: FrameProcessed):
        await super().on_process_frame(data)
        for observer in self._processed:
            await observer.on_process_frame(data)

    async def on_push_frame(self, data: FramePushed):
        await super().on_push_frame(data)
        for observer in self._companions if data.first_push else self._every_push:
            await observer.on_push_frame(data)


class FanOut(Companions, BaseObserver):
    """An observer that only hands events to its companions."""

    @property
    def observe_every_push(self) -> bool:
        return bool(self._every_push)


def joined(observers: list[BaseObserver], host: Companions | None = None) -> list[BaseObserver]:
    """``observers`` (and ``host``) as the list a ``PipelineWorker`` takes: one observer when there are several."""
    if host is None:
        if len(observers) <= 1:
            return list(observers)
        host = FanOut()
    host.add_companions(observers)
    return [host]
