"""The avatar in a running graph: real espeak-ng speech on the synthetic transport (real-time output)."""

import asyncio
import time

import numpy as np
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    OutputAudioRawFrame,
    OutputImageRawFrame,
    OutputTransportMessageFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
)

from pipelines.testing import AgentHarness
from processors.avatar import arkit, wire
from processors.avatar.arkit import neutral_mouth
from processors.avatar.frames import PoseFrame
from processors.tts.espeak import synthesize_pcm

AGENT = """
version: 1
name: face
transport: {{type: synthetic, audio_out_sample_rate: 24000, video_out: {video}}}
processors:
  tts: {{type: espeak}}
  avatar: {{type: avatar, seed: 7, {params}}}
pipeline: [input, tts, avatar, output]
"""
SENTENCE = "Hello there. Peter picked a peck of pickled peppers, and we all went home."
JAW = arkit.INDEX["jawOpen"]


def agent(params: str = "output: poses", video: bool = False) -> str:
    return AGENT.format(params=params, video=str(video).lower())


def speech_poses(frames) -> list[PoseFrame]:
    return [f for f in frames if isinstance(f, PoseFrame) and f.utterance]


async def test_poses_at_the_frame_rate_cover_the_audio_in_order():
    async with AgentHarness.from_text(agent("output: poses, fps: 25")) as h:
        avatar, out = h.probe("avatar"), h.probe("output")
        await h.inject(TTSSpeakFrame(SENTENCE), at="tts")
        await out.wait_for(BotStoppedSpeakingFrame, timeout=20)
        audio_s = len(h.output.audio_written()) / 2 / 24000
        poses = speech_poses(avatar.frames)
        times = np.array([p.time_s for p in poses])
        assert {p.utterance for p in poses} == {1}
        # One pose per 40 ms of the audio, from its first sample to its end.
        assert times[0] == 0.0 and np.all(np.diff(times) > 0)
        assert np.allclose(np.diff(times), 1 / 25)
        assert audio_s - 1 / 25 <= times[-1] <= audio_s
        assert [p.sample for p in poses] == [round(t * 24000) for t in times]
        # The mouth moved with the words and rests once they end.
        jaw = np.array([p.weights[JAW] for p in poses])
        assert jaw.max() > 0.3 and jaw[-1] < 0.1
        await asyncio.sleep(0.3)
        assert neutral_mouth(avatar.of_type(PoseFrame)[-1].weights)
        # Each pose reached the output in order with the audio, also as an RTVI message.
        delivered = speech_poses(out.frames)
        assert [p.time_s for p in delivered] == list(times)
        messages = [f.message for f in out.of_type(OutputTransportMessageFrame)]
        pose_messages = [m["data"] for m in messages if m["data"]["type"] == wire.MESSAGE_TYPE and m["data"]["u"]]
        assert [m["t"] for m in pose_messages] == [round(t * 1000) for t in times]


async def test_no_jump_between_consecutive_poses_from_idle_through_speech_and_back():
    async with AgentHarness.from_text(agent("output: frames")) as h:
        avatar, out = h.probe("avatar"), h.probe("output")
        await asyncio.sleep(0.3)  # idle poses first
        await h.inject(TTSSpeakFrame("Oh, wow! Papa bought a big blue boat."), at="tts")
        await out.wait_for(BotStoppedSpeakingFrame, timeout=20)
        await asyncio.sleep(0.3)
        poses = avatar.of_type(PoseFrame)
        speaking = [p.utterance for p in poses]
        assert speaking[0] == 0 and speaking[-1] == 0 and 1 in speaking
        step = h.processors["avatar"].max_step
        jumps = np.abs(np.diff(np.array([p.weights for p in poses]), axis=0))
        assert jumps.max() <= step + 1e-6


async def test_an_interruption_leaves_nothing_stale_and_eases_to_neutral():
    async with AgentHarness.from_text(agent("output: poses")) as h:
        avatar, out = h.probe("avatar"), h.probe("output")
        await h.inject(TTSSpeakFrame("Aaah, " + SENTENCE + " " + SENTENCE), at="tts")
        await out.wait_for(BotStartedSpeakingFrame, timeout=10)
        await asyncio.sleep(0.6)
        interrupted_at = time.monotonic()
        await h.built.interrupt()
        await asyncio.sleep(0.6)
        # Nothing of the interrupted speech reached the output after the interruption.
        late = [f for f, t in zip(out.frames, out.times, strict=False) if t > interrupted_at + 0.005
                and (isinstance(f, OutputAudioRawFrame) or (isinstance(f, PoseFrame) and f.utterance))]
        assert late == []
        after = [(f, t) for f, t in zip(avatar.frames, avatar.times, strict=False) if t >= interrupted_at and isinstance(f, PoseFrame)]
        assert after and all(f.utterance == 0 for f, _ in after)
        # The avatar eases from the face on screen to neutral in ease_frames poses (100 ms at 30 fps).
        ease = h.processors["avatar"].ease_frames
        assert ease == 3
        first_neutral = next(i for i, (f, _) in enumerate(after) if neutral_mouth(f.weights))
        assert first_neutral <= ease - 1
        assert after[first_neutral][1] - interrupted_at < 0.5  # 100 ms goal; generous for a loaded machine
        # It eases: the mouth only closes on the way, it never snaps open.
        mouths = [float(np.abs(f.weights[arkit.MOUTH]).sum()) for f, _ in after[:first_neutral + 1]]
        assert all(b <= a + 1e-6 for a, b in zip(mouths, mouths[1:], strict=False))
        # Those poses reached the output too, and the face stays neutral after.
        delivered_after = [f for f, t in zip(out.frames, out.times, strict=False) if t >= interrupted_at and isinstance(f, PoseFrame)]
        assert delivered_after and neutral_mouth(delivered_after[-1].weights)


async def test_audio_driven_mouth_follows_speech_energy():
    async with AgentHarness.from_text(agent("output: frames, source: audio")) as h:
        avatar, out = h.probe("avatar"), h.probe("output")
        await h.inject(TTSSpeakFrame("Hello there, how are you today?"), at="tts")
        await out.wait_for(BotStoppedSpeakingFrame, timeout=20)
        poses = speech_poses(avatar.frames)
        audio = np.frombuffer(h.output.audio_written(), dtype=np.int16).astype(float)
        jaw = np.array([p.weights[JAW] for p in poses])
        energy = np.array([np.sqrt(np.mean(audio[p.sample:p.sample + 480] ** 2)) if p.sample + 480 <= len(audio) else 0.0
                           for p in poses])
        assert jaw.max() > 0.2 and jaw.min() < 0.1
        assert np.corrcoef(jaw, energy)[0, 1] > 0.5
        await asyncio.sleep(0.3)
        assert neutral_mouth(avatar.of_type(PoseFrame)[-1].weights)


async def test_rendered_face_reaches_the_video_output_and_moves_while_speaking():
    async with AgentHarness.from_text(agent("output: video, size: 96", video=True)) as h:
        out = h.probe("output")
        await h.inject(TTSSpeakFrame("Wow, a big open mouth."), at="tts")
        await out.wait_for(BotStoppedSpeakingFrame, timeout=20)
        images = [w.frame for w in h.output.written if isinstance(w.frame, OutputImageRawFrame)]
        assert images
        # pipecat's output scales frames to its video size; the face changed from frame to frame.
        assert len({hash(i.image) for i in images}) > 5


async def test_tts_audio_without_phonemes_drives_the_mouth_reply_by_reply():
    """Behind a TTS that times no phonemes and sends no stop frame (as cloud TTSs stream): its audio alone."""
    pcm = await synthesize_pcm("Hello there.", sample_rate=24000)
    duration = len(pcm) / 2 / 24000
    async with AgentHarness.from_text(agent("output: frames")) as h:
        avatar = h.probe("avatar")
        for reply in (1, 2):
            for i in range(0, len(pcm), 2400):
                await h.inject(TTSAudioRawFrame(pcm[i:i + 2400], 24000, 1, context_id=f"reply-{reply}"), at="avatar")
        # The second reply's last pose comes out though no stop frame follows it (hold_ms).
        await avatar.wait_for(PoseFrame, where=lambda p: p.utterance == 2 and p.time_s >= duration - 1 / 30, timeout=10)
        poses = speech_poses(avatar.frames)
        assert {p.utterance for p in poses} == {1, 2}
        for reply in (1, 2):
            times = [p.time_s for p in poses if p.utterance == reply]
            assert times[0] == 0.0 and times[-1] >= duration - 1 / 30
            assert max(p.weights[JAW] for p in poses if p.utterance == reply) > 0.2
