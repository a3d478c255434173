"""The output contract for interruptions (``InterruptibleOutput.clear_buffer``) and the typed build context."""

import asyncio
import time

from pipecat.frames.frames import TTSAudioRawFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.transports.base_transport import TransportParams
from test_interruption_graphs import Counter, running

from pipelines.builder import build_agent
from pipelines.interruptions import DroppedReport, InterruptibleOutput, guard_graph
from pipelines.interruptions.output import clear_buffer_of
from pipelines.registry import BuildContext, TypeInfo
from pipelines.validate import Component, load_agent_text
from transports.file import FileOutput
from transports.synthetic import SyntheticOutput, SyntheticParams, SyntheticTransport
from transports.webrtc.transport import WebRTCOutput
from transports.websocket.transport import WebsocketOutput

SECOND = "second"


def test_every_output_framegraph_builds_implements_the_contract():
    for output in (SyntheticOutput, FileOutput, WebRTCOutput, WebsocketOutput):
        assert issubclass(output, InterruptibleOutput), output.__name__
    # pipecat's own outputs (daily, local) get the contract from clear_buffer_of.
    plain = BaseOutputTransport(TransportParams(audio_out_enabled=True))
    assert not isinstance(plain, InterruptibleOutput) and callable(clear_buffer_of(plain))


async def _queue_second_destination_audio(first, seconds: float) -> None:
    for _ in range(int(seconds * 50)):
        chunk = TTSAudioRawFrame(b"\x00\x10" * 320, 16000, 1)
        chunk.transport_destination = SECOND
        await first.queue_frame(chunk)


def _output() -> SyntheticOutput:
    params = TransportParams(audio_out_enabled=True, audio_out_sample_rate=16000, audio_out_destinations=[SECOND])
    return SyntheticOutput(params, realtime=True, name="output")


async def test_clear_buffer_drops_what_every_destination_queues_and_reports_it():
    output, first = _output(), Counter(name="first")
    async with running(Pipeline([first, output])):
        await _queue_second_destination_audio(first, 2.0)
        await asyncio.sleep(0.3)
        report = await output.clear_buffer()
        at = time.monotonic()
        await asyncio.sleep(0.3)
    assert report.frames > 0 and report.clients_told == 0, report
    played_after = sum(len(w.frame.audio) / 32 for w in output.written if w.time > at)  # ms at 16 kHz mono
    assert played_after <= 40


async def test_the_guard_clears_the_output_once_per_interruption_and_counts_it():
    output, first = _output(), Counter(name="first")
    pipeline = Pipeline([first, output])
    guard = guard_graph(pipeline, {output: "output"})
    async with running(pipeline):
        await _queue_second_destination_audio(first, 2.0)
        await asyncio.sleep(0.3)
        await guard.interrupt()
        await asyncio.sleep(0.3)
    cleared = guard.stats["output"].cleared
    assert isinstance(cleared, DroppedReport) and cleared.frames > 0


def test_the_peer_reaches_the_factory_as_a_typed_field_and_params_follow_the_built_transport():
    seen: list[BuildContext] = []

    def make_peer_transport(params: SyntheticParams, ctx: BuildContext):
        seen.append(ctx)
        return SyntheticTransport(params, name="peer")

    agent = load_agent_text("version: 1\nname: p\ntransport: {type: synthetic}\nprocessors: {}\npipeline: [input, output]\n")
    info = TypeInfo("transport", "peered", SyntheticParams, make_peer_transport, "test transport")
    override = Component("transport", info, SyntheticParams(audio_in_sample_rate=8000, audio_out_sample_rate=48000))
    peer = object()
    built = build_agent(agent, transport=override, peer=peer)
    assert seen[0].peer is peer and seen[0].audio_out_sample_rate == 48000
    assert built.transport_component is override
    assert (built.params.audio_in_sample_rate, built.params.audio_out_sample_rate) == (8000, 48000)
    assert build_agent(agent).params.audio_out_sample_rate == 24000
