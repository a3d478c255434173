"""The settings gate on real pipecat workers: a change mid-response waits for the response's end."""

import asyncio
import re
import time

import pytest
from pipecat.frames.frames import (
    Frame,
    FunctionCallInProgressFrame,
    InterruptionWorkerFrame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMMessagesAppendFrame,
    LLMTextFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner

from pipelines.sessions.settings_gate import SettingsChange, SettingsChangeFrame, SettingsGate
from pipelines.sessions.settings_model import BadSettings
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

    def __init__(self, *, speaks: bool = False, tool=None):
        self.context = LLMContext(messages=[{"role": "system", "content": "OLD"}])
        pair = LLMContextAggregatorPair(self.context)
        self.snapshots = PromptSnapshots()
        rules = [Rule(re.compile("story"), STORY), Rule(re.compile("briefly"), SHORT),
                 Rule(re.compile("look it up"), "The answer is {answer}.", tool="lookup", say="Let me check.")]
        self.llm = ScriptedLLMService(rules=rules, fallback="Fine.", token_delay_s=0.02)
        if tool is not None:
            self.llm.register_function("lookup", tool)
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
        async def on_held(gate, pending):
            self.held.append(pending.change)

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


async def test_changes_held_during_one_response_merge_field_by_field_and_all_are_reported():
    async with GatedAgent() as agent:
        await agent.user_says("tell me a story")
        await agent.recorder.wait_count(LLMFullResponseStartFrame, 1)
        assert not await agent.gate.submit(SettingsChange(system_prompt="FIRST", llm={"temperature": 0.9}), "a")
        assert not await agent.gate.submit(SettingsChange(system_prompt="SECOND", llm={"top_p": 0.5}), "b")
        assert [p.id for p in agent.gate.pending] == ["a", "b"]
        assert agent.gate.held == SettingsChange(system_prompt="SECOND", llm={"temperature": 0.9, "top_p": 0.5})
        await agent.recorder.wait_count(LLMFullResponseEndFrame, 1)
        await agent.wait_applied()
        await asyncio.sleep(0.2)
        assert len(agent.applied) == 1 and agent.applied[0][1].change_ids == ("a", "b")
        assert agent.context.get_messages()[0]["content"] == "SECOND"  # the later value of a field wins
        assert agent.llm.settings.temperature == 0.9  # the first change's other fields were not lost
        assert agent.llm.settings.top_p == 0.5
        assert agent.gate.pending == []


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


async def test_a_change_during_a_tool_call_waits_for_the_follow_up_reply():
    release = asyncio.Event()

    async def lookup(params):  # a slow tool: its result comes when the test says so
        await release.wait()
        await params.result_callback({"answer": "42"})

    async with GatedAgent(tool=lookup) as agent:
        await agent.user_says("look it up")
        await agent.recorder.wait_count(FunctionCallInProgressFrame, 1)
        await agent.recorder.wait_count(LLMFullResponseEndFrame, 1)  # "Let me check." is done; the call is not
        assert not await agent.gate.submit(SettingsChange(system_prompt="NEW"))
        await asyncio.sleep(0.3)
        assert agent.applied == [] and agent.gate.response_active
        release.set()
        await agent.recorder.wait_count(LLMFullResponseEndFrame, 2)
        await agent.wait_applied()
        follow_up_end = [t for t, f in agent.llm_pushes.frames if isinstance(f, LLMFullResponseEndFrame)][1]
        assert agent.applied[0][0] >= follow_up_end  # after the tool's follow-up reply, not between
        assert agent.context.get_messages()[0]["content"] == "NEW"


async def test_a_change_after_the_users_turn_end_waits_for_the_reply():
    async with GatedAgent() as agent:
        await agent.gate.queue_frame(UserStoppedSpeakingFrame())  # the user's turn ended; no reply started yet
        await asyncio.sleep(0.1)
        assert not await agent.gate.submit(SettingsChange(system_prompt="NEW"))
        await agent.user_says("tell me a story")
        await agent.recorder.wait_count(LLMFullResponseEndFrame, 1)
        await agent.wait_applied()
        assert agent.snapshots.prompts == ["OLD"]  # the reply to that turn kept the old prompt


def test_an_empty_change_is_refused_and_an_unknown_key_is_named():
    with pytest.raises(ValueError, match="at least one of llm, tts, system_prompt"):
        SettingsChange()
    with pytest.raises(BadSettings, match="voice: not a setting"):
        SettingsGate().check(SettingsChange(voice="x"))


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
