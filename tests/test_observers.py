"""A worker's observers ride on one pipecat proxy (``pipelines.observers``), each getting the events it asked for."""

import asyncio

from pipecat.frames.frames import TextFrame
from pipecat.observers.base_observer import BaseObserver, FrameProcessed, FramePushed
from pipecat.processors.frame_processor import FrameDirection

from pipelines.observers import FanOut, joined
from pipelines.testing import AgentHarness

AGENT = """
version: 1
name: observed
transport: {type: synthetic}
processors:
  a: {type: passthrough}
  b: {type: passthrough}
pipeline: [input, a, b, output]
"""


class Recorder(BaseObserver):
    def __init__(self, every_push: bool):
        super().__init__(observe_every_push=every_push)
        self.pushed: list[tuple[int, bool]] = []

    async def on_push_frame(self, data: FramePushed):
        self.pushed.append((data.frame.id, data.first_push))


class ProcessRecorder(Recorder):
    def __init__(self):
        super().__init__(every_push=True)
        self.processed: list[int] = []

    async def on_process_frame(self, data: FrameProcessed):
        self.processed.append(data.frame.id)


async def test_each_companion_gets_the_events_it_asked_for():
    every, first = ProcessRecorder(), Recorder(every_push=False)
    (fan,) = joined([every, first])
    assert isinstance(fan, FanOut) and fan.observe_every_push
    frame = TextFrame("hi")
    for first_push in (True, False, False):
        await fan.on_push_frame(FramePushed(None, None, frame, FrameDirection.DOWNSTREAM, 0, first_push))
    await fan.on_process_frame(FrameProcessed(None, frame, FrameDirection.DOWNSTREAM, 0))
    assert every.pushed == [(frame.id, True), (frame.id, False), (frame.id, False)] and every.processed == [frame.id]
    assert first.pushed == [(frame.id, True)]
    # only first-push observers: pipecat need not queue repeated pushes at all
    (quiet,) = joined([Recorder(every_push=False), Recorder(every_push=False)])
    assert not quiet.observe_every_push
    single = Recorder(every_push=True)
    assert joined([single]) == [single]


def proxy_tasks() -> int:
    return sum("_proxy_task_handler" in task.get_name() for task in asyncio.all_tasks())


async def test_a_running_worker_feeds_all_its_observers_through_one_queue():
    every, first = Recorder(every_push=True), Recorder(every_push=False)
    async with AgentHarness.from_text(AGENT, observers=[every, first]) as harness:
        out = harness.probe("b")
        assert proxy_tasks() == 1  # the harness's probe, and both recorders, on one proxy
        frame = TextFrame("through")
        await harness.inject(frame)
        await out.wait_for(TextFrame, where=lambda f: f is frame)
        await asyncio.sleep(0.05)
    hops = [first_push for frame_id, first_push in every.pushed if frame_id == frame.id]
    assert hops[0] and len(hops) >= 3 and not any(hops[1:])  # input -> a -> b -> output, every hop
    assert [first_push for frame_id, first_push in first.pushed if frame_id == frame.id] == [True]
