"""The settings gate on real pipecat workers: a change mid-response waits for the response's end."""

import asyncio
import re
import time

import pytest
from pipecat.frames.frames import (
    Frame,
    InterruptionWorkerFrame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMMessagesAppendFrame,
    LLMTextFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner

from pipelines.sessions.settings_gate import SettingsChange, SettingsChangeFrame, SettingsGate
from processors.llm.scripted import Rule, ScriptedLLMService

STORY = " ".join(f"Sentence {i} of a story." for i in range(12))
SHORT = "One short sentence. And a second one."


class PromptSnapshots(FrameProcessor):
    """Records the system prompt each LLM request carries, as it goes to the LLM."""

    def __init__(self):
        super().__init__(name="snapshots")
        self.prompts: list[str] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMContextFrame):
            messages = frame.context.get_messages()
            self.prompts.append(next(m["content"] for m in messages if m.get("role") == "system"))
        await self.push_frame(frame, direction)


class Recorder(FrameProcessor):
    """Records (monotonic time, frame) of what flows down to it; lets a test wait for a frame type."""

    def __init__(self):
        super().__init__(name="recorder")
        self.frames: list[tuple[float, Frame]] = []
        self._changed = asyncio.Event()

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if direction is FrameDirection.DOWNSTREAM:
            self.frames.append((time.monotonic(), frame))
            self._changed.set()
        await self.push_frame(frame, direction)

    def count(self, kind: type) -> int:
        return sum(isinstance(f, kind) for _, f in self.frames)

    async def wait_count(self, kind: type, n: int, timeout: float = 10.0) -> float:
        """Waits until ``n`` frames of ``kind`` arrived; returns the arrival time of the n-th."""
        async with asyncio.timeout(timeout):
            while self.count(kind) < n:
                self._changed.clear()
                await self._changed.wait()
        return [t for t, f in self.frames if isinstance(f, kind)][n - 1]


class LLMPushes(BaseObserver):
    """Records (monotonic time, frame) of every frame the LLM pushes, at the moment it pushes it."""

    def __init__(self, llm):
        super().__init__()
        self.llm = llm
        self.frames: list[tuple[float, Frame]] = []

    async def on_push_frame(self, data: FramePushed):
        if data.source is self.llm:
            self.frames.append((time.monotonic(), data.frame))


class GatedAgent:
    """A running pipecat worker: user context -> scripted LLM -> gate [-> TTS -> output] -> assistant context."""

    def __init__(self, *, speaks: bool = False):
        self.context = LLMContext(messages=[{"role": "system", "content": "OLD"}])
        pair = LLMContextAggregatorPair(self.context)
        self.snapshots = PromptSnapshots()
        self.llm = ScriptedLLMService(rules=[Rule(re.compile("story"), STORY), Rule(re.compile("briefly"), SHORT)], fallback="Fine.", token_delay_s=0.02)
        self.llm_pushes = LLMPushes(self.llm)
        tts_settings = {}
        self.recorder = Recorder()
        middle: list[FrameProcessor] = [self.recorder]
        if speaks:
            from processors.tts.espeak import EspeakTTSService
            from transports.synthetic import SyntheticParams, SyntheticTransport

            self.tts = EspeakTTSService(sample_rate=16000)
            self.output = SyntheticTransport(SyntheticParams(audio_out_sample_rate=16000)).output()
            middle = [self.tts, self.recorder, self.output]
            tts_settings = {"tts_settings": EspeakTTSService.Settings}
        self.gate = SettingsGate(context=self.context, speaks=speaks, speech_start_timeout_s=1.0, **tts_settings)
        processors = [pair.user(), self.snapshots, self.llm, self.gate, *middle, pair.assistant()]
        self.worker = PipelineWorker(Pipeline(processors), enable_rtvi=False, observers=[self.llm_pushes])
        self.applied: list[tuple[float, object]] = []
        self.held: list[SettingsChange] = []

        @self.gate.event_handler("on_settings_applied")
        async def on_applied(gate, applied):
            self.applied.append((time.monotonic(), applied))

        @self.gate.event_handler("on_settings_held")
        async def on_held(gate, change):
            self.held.append(change)

    async def __aenter__(self):
        self.runner = WorkerRunner(handle_sigint=False)
        await self.runner.add_workers(self.worker)
        self.task = asyncio.create_task(self.runner.run())
        await asyncio.sleep(0.2)
        return self

    async def __aexit__(self, *exc):
        await self.worker.cancel(reason="test done")
        await asyncio.wait_for(self.task, 10)

    async def user_says(self, text: str) -> None:
        await self.worker.queue_frame(LLMMessagesAppendFrame([{"role": "user", "content": text}], run_llm=True))

    async def wait_applied(self, n: int = 1, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.applied) < n:
                await asyncio.sleep(0.01)


async def test_system_prompt_change_mid_reply_takes_effect_on_the_next_reply():
    async with GatedAgent() as agent:
        await agent.user_says("tell me a story")
        await agent.recorder.wait_count(LLMTextFrame, 3)
        await agent.worker.queue_frame(SettingsChangeFrame(change=SettingsChange(system_prompt="NEW")))
        await asyncio.sleep(0.1)
        assert agent.gate.response_active and agent.held == [SettingsChange(system_prompt="NEW")]
        assert agent.context.get_messages()[0]["content"] == "OLD"  # not touched while the reply streams
        await agent.recorder.wait_count(LLMFullResponseEndFrame, 1)
        await agent.wait_applied()
        applied_at, applied = agent.applied[0]
        reply_end = next(t for t, f in agent.llm_pushes.frames if isinstance(f, LLMFullResponseEndFrame))
        assert applied.held and applied_at >= reply_end  # after the LLM finished the reply
        await agent.user_says("and now?")
        await agent.recorder.wait_count(LLMFullResponseEndFrame, 2)
        assert agent.snapshots.prompts == ["OLD", "NEW"]


async def test_change_while_idle_applies_at_once_and_reaches_the_llm():
    async with GatedAgent() as agent:
        assert await agent.gate.submit(SettingsChange(llm={"temperature": 0.3}, system_prompt="IDLE"))
        await agent.wait_applied()
        assert not agent.applied[0][1].held
        await asyncio.sleep(0.2)
        assert agent.llm.settings.temperature == 0.3
        await agent.user_says("hi")
        await agent.recorder.wait_count(LLMFullResponseEndFrame, 1)
        assert agent.snapshots.prompts == ["IDLE"]


async def test_second_change_while_held_replaces_the_first():
    async with GatedAgent() as agent:
        await agent.user_says("tell me a story")
        await agent.recorder.wait_count(LLMFullResponseStartFrame, 1)
        assert not await agent.gate.submit(SettingsChange(system_prompt="FIRST", llm={"temperature": 0.9}))
        assert not await agent.gate.submit(SettingsChange(system_prompt="SECOND"))
        assert agent.gate.held == SettingsChange(system_prompt="SECOND")
        await agent.recorder.wait_count(LLMFullResponseEndFrame, 1)
        await agent.wait_applied()
        await asyncio.sleep(0.2)
        assert [a.change for _, a in agent.applied] == [SettingsChange(system_prompt="SECOND")]
        assert agent.context.get_messages()[0]["content"] == "SECOND"
        assert agent.llm.settings.temperature is None  # the replaced change never reached the LLM


async def test_interruption_applies_the_held_change_at_once():
    async with GatedAgent() as agent:
        await agent.user_says("tell me a story")
        await agent.recorder.wait_count(LLMTextFrame, 2)
        await agent.gate.submit(SettingsChange(system_prompt="AFTER BARGE-IN"))
        assert agent.applied == []
        await agent.recorder.queue_frame(InterruptionWorkerFrame(), FrameDirection.UPSTREAM)
        await agent.wait_applied(timeout=5)
        assert agent.recorder.count(LLMFullResponseEndFrame) == 0  # the reply was cut, not finished
        assert agent.context.get_messages()[0]["content"] == "AFTER BARGE-IN"


def test_an_empty_change_is_refused():
    with pytest.raises(ValueError, match="at least one of llm, tts, system_prompt"):
        SettingsChange()
    with pytest.raises(ValueError, match="voice"):
        SettingsChange(voice="x")


async def test_tts_change_waits_until_the_bot_stops_speaking():
    pytest.importorskip("espeakng_loader", reason="the speech extra (espeak-ng) is not installed")
    from pipecat.frames.frames import TTSAudioRawFrame

    async with GatedAgent(speaks=True) as agent:
        await agent.user_says("say it briefly")
        await agent.recorder.wait_count(TTSAudioRawFrame, 1)
        await agent.gate.submit(SettingsChange(tts={"rate": 300}))
        await agent.recorder.wait_count(LLMFullResponseEndFrame, 1, timeout=20)
        assert agent.applied == []  # the LLM is done but the bot still speaks
        await agent.wait_applied(timeout=60)
        applied_at = agent.applied[0][0]
        last_audio = agent.output.written[-1].time
        assert applied_at >= last_audio
        await asyncio.sleep(0.2)
        assert agent.tts.settings.rate == 300
