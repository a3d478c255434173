"""The pocketsphinx STT: grammars, streaming decoding in worker processes, transcripts."""

import asyncio
import os

import pytest
from pipecat.frames.frames import (
    ErrorFrame,
    InterimTranscriptionFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)

from pipelines.builder import build_agent
from pipelines.errors import ConfigErrors
from pipelines.testing import AgentHarness
from pipelines.validate import load_agent_text
from processors.stt.grammar import GrammarError, check_grammar, grammar_words, phrases_to_jsgf
from processors.tts.espeak import synthesize_pcm

PHRASES = ["go forward ten meters", "turn left", "what time is it", "stop"]

AGENT = """
version: 1
name: stt
transport: {{type: synthetic, audio_in_sample_rate: {rate}}}
processors:
  stt: {stt}
pipeline: [input, stt, output]
"""


def agent(stt: str, rate: int = 16000) -> str:
    return AGENT.format(stt=stt, rate=rate)


def test_phrases_become_a_grammar_of_alternatives():
    jsgf = phrases_to_jsgf(["Go forward, ten meters!", "turn left"])
    assert "public <phrase> = ( go forward ten meters ) | ( turn left );" in jsgf
    assert grammar_words(jsgf) == {"go", "forward", "ten", "meters", "turn", "left"}
    check_grammar(jsgf, "processors.stt.phrases")


def test_grammar_errors_are_one_line_naming_the_key():
    broken = "#JSGF V1.0;\ngrammar g;\npublic <cmd> = go ( forward;\n"
    with pytest.raises(GrammarError, match=r"^processors\.stt\.grammar: JSGF does not parse: syntax error.*line 3"):
        check_grammar(broken, "processors.stt.grammar")
    with pytest.raises(GrammarError, match="not in the pronunciation dictionary: blorptastic"):
        check_grammar(phrases_to_jsgf(["blorptastic now"]), "processors.stt.phrases")


@pytest.mark.parametrize(
    ("stt", "expected"),
    [
        ("{type: pocketsphinx, grammar: 'public <a> = go ( forward;'}", "processors.stt.grammar: JSGF does not parse"),
        ("{type: pocketsphinx, grammar_file: missing.gram}", "processors.stt.grammar_file: cannot read"),
        ("{type: pocketsphinx, phrases: [hello, zzyzxq]}", "processors.stt.phrases: words not in"),
    ],
)
def test_a_bad_grammar_fails_the_build_in_one_line(stt, expected):
    with pytest.raises(ConfigErrors) as raised:
        build_agent(load_agent_text(agent(stt)))
    assert expected in str(raised.value) and "\n" not in str(raised.value)


def test_only_one_grammar_source_is_accepted():
    with pytest.raises(ConfigErrors, match="only one of phrases, grammar and grammar_file"):
        load_agent_text(agent("{type: pocketsphinx, phrases: [stop], grammar: 'x'}"))


async def _utterance(h: AgentHarness, pcm: bytes, rate: int) -> None:
    """Speech framed by VAD events, as the user aggregator sends them to the STT (upstream)."""
    silence = b"\0" * (rate // 5 * 2)
    await h.inject_audio(silence, sample_rate=rate)
    await h.inject(VADUserStartedSpeakingFrame(start_secs=0.2), at="stt", upstream=True)
    await h.inject_audio(pcm + silence, sample_rate=rate, realtime=True)
    await h.inject(VADUserStoppedSpeakingFrame(stop_secs=0.2), at="stt", upstream=True)


@pytest.mark.parametrize("rate", [16000, 24000])
async def test_phrases_transcribe_espeak_speech_exactly_with_word_timings(rate):
    speech = await synthesize_pcm("turn left", sample_rate=rate)
    async with AgentHarness.from_text(agent(f"{{type: pocketsphinx, phrases: {PHRASES}}}", rate)) as h:
        out = h.probe("stt")
        await _utterance(h, speech, rate)
        final = await out.wait_for(TranscriptionFrame, timeout=10.0)
    assert final.text == "turn left" and final.finalized
    words = final.result["words"]
    assert [w["word"] for w in words] == ["turn", "left"]
    assert 0 < words[0]["start"] < words[0]["end"] <= words[1]["start"] < words[1]["end"]


async def test_language_model_gives_interim_then_final_transcripts():
    speech = await synthesize_pcm("go forward ten meters and then turn left at the door")
    async with AgentHarness.from_text(agent("{type: pocketsphinx, interim_secs: 0.2}")) as h:
        out = h.probe("stt")
        await _utterance(h, speech, 16000)
        final = await out.wait_for(TranscriptionFrame, timeout=10.0)
        interims = out.of_type(InterimTranscriptionFrame)
    assert final.finalized and len(final.text.split()) >= 5
    assert interims and all(out.frames.index(i) < out.frames.index(final) for i in interims)


async def test_agents_decode_in_parallel_in_processes_of_their_own():
    from processors.stt.decoder_pool import HostConfig, decoder_host

    speeches = [await synthesize_pcm(p) for p in ("what time is it", "stop")]
    config = agent(f"{{type: pocketsphinx, phrases: {PHRASES}}}")
    async with AgentHarness.from_text(config) as first, AgentHarness.from_text(config) as second:
        probes = [first.probe("stt"), second.probe("stt")]
        await asyncio.gather(_utterance(first, speeches[0], 16000), _utterance(second, speeches[1], 16000))
        finals = [await p.wait_for(TranscriptionFrame, timeout=10.0) for p in probes]
    assert [f.text for f in finals] == ["what time is it", "stop"]
    assert decoder_host(HostConfig()).pid != os.getpid()


async def test_speech_outside_the_grammar_gives_no_transcript_and_decoding_goes_on():
    noise = (b"\x10\x27\xf0\xd8" * 4000)  # a loud square wave: nothing the grammar knows
    speech = await synthesize_pcm("stop")
    async with AgentHarness.from_text(agent(f"{{type: pocketsphinx, phrases: {PHRASES}}}")) as h:
        out = h.probe("stt")
        await _utterance(h, noise, 16000)
        await _utterance(h, speech, 16000)
        final = await out.wait_for(TranscriptionFrame, timeout=10.0)
    assert [f.text for f in out.of_type(TranscriptionFrame)] == ["stop"] and final.text == "stop"


async def test_the_first_words_survive_a_late_vad_start():
    speech = await synthesize_pcm("go forward ten meters")
    head = len(speech) // 2 // 2 * 2  # "go forward" has been heard before VAD's start arrives
    phrases = PHRASES + ["ten meters", "meters"]
    async with AgentHarness.from_text(agent(f"{{type: pocketsphinx, phrases: {phrases}}}")) as h:
        out = h.probe("stt")
        await h.inject_audio(b"\0" * 6400 + speech[:head], realtime=True)
        await h.inject(VADUserStartedSpeakingFrame(start_secs=0.2), at="stt", upstream=True)
        await h.inject_audio(speech[head:] + b"\0" * 6400, realtime=True)
        await h.inject(VADUserStoppedSpeakingFrame(stop_secs=0.2), at="stt", upstream=True)
        final = await out.wait_for(TranscriptionFrame, timeout=10.0)
    assert final.text == "go forward ten meters"


def test_unknown_phrase_words_are_reported_by_validation_with_their_line():
    with pytest.raises(ConfigErrors) as raised:
        load_agent_text(agent("{type: pocketsphinx, phrases: [hello, zzyzxq]}"), "agent.yaml")
    (error,) = raised.value.errors
    assert error.mark.line == 6 and "zzyzxq" in error.message


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except OSError:
                continue
    return found


async def test_an_agent_whose_decoder_dies_reconnects_and_goes_on():
    from processors.stt.decoder_pool import HostConfig, decoder_host

    speech = await synthesize_pcm("turn left")
    async with AgentHarness.from_text(agent(f"{{type: pocketsphinx, phrases: {PHRASES}}}")) as h:
        out, errors = h.probe("stt"), h.probe("stt", upstream=True)
        for child in _children(decoder_host(HostConfig(language_model=False, domain_check=True)).pid):
            os.kill(child, 9)
        await errors.wait_for(ErrorFrame, timeout=5.0)
        await _utterance(h, speech, 16000)
        final = await out.wait_for(TranscriptionFrame, timeout=10.0)
    assert final.text == "turn left"
