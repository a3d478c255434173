"""The default agent rejects speech outside its phrases, and still answers every phrase.

configs/assistant.yaml restricts pocketsphinx to seven phrases; its
open-vocabulary check (processors/stt/out_of_domain.py) must turn any other
speech into the scripted LLM's fallback. Each test is one conversation WAV
run through the whole agent on the file transport.
"""

import asyncio
import json
import os
import wave
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import HUMAN_AUDIO, ROOT
from pipecat.workers.runner import WorkerRunner

from pipelines.builder import build_agent
from pipelines.validate import load_agent
from processors.stt.out_of_domain import common_subsequence, phones
from processors.tts.espeak import synthesize_pcm

ASSISTANT = ROOT / "configs" / "assistant.yaml"
RATE = 16000
SPEC = yaml.safe_load(ASSISTANT.read_text())
PHRASES = SPEC["processors"]["stt"]["phrases"]
FALLBACK = SPEC["processors"]["llm"]["fallback"]
#: Seconds from one question's end to the next one's start: every answer but the story's fits.
GAP_SECS = 5.0


def reply_to(phrase: str) -> str:
    """The reply configs/assistant.yaml's rules give to ``phrase``."""
    import re

    rules = SPEC["processors"]["llm"]["rules"]
    return next(r["reply"] for r in rules if re.search(r["match"], phrase, re.IGNORECASE))


def conversation(path: Path, clips: list[np.ndarray]) -> None:
    """Writes the clips one after the other, each followed by GAP_SECS of silence."""
    gap = np.zeros(int(GAP_SECS * RATE), dtype=np.int16)
    audio = np.concatenate([np.zeros(RATE // 2, dtype=np.int16)] + [part for clip in clips for part in (clip, gap)])
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(audio.tobytes())


async def assistant_turns(tmp_path: Path, monkeypatch, config: Path = ASSISTANT) -> list[tuple[str, str]]:
    """Runs ``config`` (configs/assistant.yaml) on tmp_path/in.wav; its (role, text) turns."""
    monkeypatch.setenv("FRAMEGRAPH_INPUT", str(tmp_path / "in.wav"))
    monkeypatch.setenv("FRAMEGRAPH_OUT", str(tmp_path))
    runner = WorkerRunner(handle_sigint=False, force_gc=True)
    await runner.add_workers(build_agent(load_agent(config)).worker())
    await asyncio.wait_for(runner.run(), 120)
    lines = (tmp_path / "assistant.jsonl").read_text().splitlines()
    return [(t["role"], t["text"]) for t in map(json.loads, lines)]


def test_unexplained_phones_are_counted_against_the_phrase():
    from pocketsphinx import Decoder

    decoder = Decoder(loglevel="WARN")  # pocketsphinx's default: its log level is global to the process
    phrase = phones(decoder, ["what", "time", "is", "it"])
    assert phrase == "W AH T T AY M IH Z IH T".split()
    heard = phones(decoder, ["go", "forward", "ten", "meters"])
    assert len(heard) - common_subsequence(phrase, heard) >= 9  # nearly nothing of the phrase in it
    assert common_subsequence(phrase, phones(decoder, ["what", "i"])) == 4  # W AH T AY: all of it is in the phrase


async def test_digital_silence_before_the_first_question():
    """The first utterance of a WebRTC session: a fresh decoder, near-digital silence before the words.

    What a WebRTC session's decoder got before "what is the weather like
    today" when the browser's microphone was silent: zeros with a +1/-1 pair
    every 20 ms. The open pass of a fresh decoder (pocketsphinx's initial
    cepstral mean) read it, undithered, as "pilates unwed onto", and the first
    question of a WebRTC session got the fallback.
    """
    from pocketsphinx import Decoder

    from processors.stt.decoder_host import FRAMES_PER_SEC, OPEN_PASS_BEAMS, decoder_kwargs
    from processors.stt.out_of_domain import DomainCheck

    lead = np.zeros(int(0.7 * RATE), dtype=np.int16)
    lead[::320], lead[73::320] = 1, -1
    question = await synthesize_pcm("what is the weather like today", sample_rate=RATE)
    # The host's settings at pocketsphinx's default log level: the level is global to the process.
    settings = decoder_kwargs({"max_hmm_per_frame": 3000, "accurate": False}) | {"loglevel": "WARN"}
    decoder = Decoder(**settings, **OPEN_PASS_BEAMS["fast"])
    check = DomainCheck(decoder, SPEC["processors"]["stt"].get("out_of_domain_margin", 0.8), FRAMES_PER_SEC)
    check.start()
    check.process(lead.tobytes() + question)
    verdict = check.judge("what is the weather like today".split())
    assert not verdict.out_of_domain and verdict.open_words[0][0].startswith("what"), verdict  # undithered: "pilates"


@pytest.mark.parametrize("voice,rate", [("en-us", 175), ("en-us+f3", 140)])
async def test_every_phrase_still_gets_its_answer(tmp_path, monkeypatch, voice, rate):
    # The story's long answer would be interrupted by a next question: it comes last.
    phrases = sorted(PHRASES, key=lambda p: "story" in p)
    clips = [np.frombuffer(await synthesize_pcm(p, voice=voice, rate=rate, sample_rate=RATE), dtype=np.int16)
             for p in phrases]
    conversation(tmp_path / "in.wav", clips)
    turns = await assistant_turns(tmp_path, monkeypatch)
    expected = [turn for phrase in phrases for turn in (("user", phrase), ("assistant", reply_to(phrase)))]
    assert turns == expected


async def test_the_bundled_question_gets_its_answer(tmp_path, monkeypatch):
    with wave.open(str(ROOT / "configs" / "audio" / "question.wav")) as wav:
        question = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    conversation(tmp_path / "in.wav", [question])
    assert await assistant_turns(tmp_path, monkeypatch) == [
        ("user", "what is the weather like today"), ("assistant", reply_to("what is the weather like today")),
    ]


#: Out-of-domain speech espeak-ng makes where no human clips are found: nothing like any of the agent's phrases.
OUT_OF_DOMAIN = ("please turn on the lights in the kitchen", "the quarterly budget meeting moved to thursday afternoon")


async def test_each_out_of_domain_clip_gets_the_fallback(tmp_path, monkeypatch):
    """Human clips (FRAMEGRAPH_HUMAN_AUDIO, else the shared folder) or, where there are none, sentences espeak-ng
    speaks: every answer is the fallback, none an answer to the nearest phrase."""
    folder = Path(os.environ.get("FRAMEGRAPH_HUMAN_AUDIO", HUMAN_AUDIO))
    clips = sorted(folder.glob("*.wav"))
    if not clips:
        audio = [np.frombuffer(await synthesize_pcm(text, sample_rate=RATE), dtype=np.int16) for text in OUT_OF_DOMAIN]
        conversation(tmp_path / "in.wav", audio)
        turns = await assistant_turns(tmp_path, monkeypatch, at_the_audio_pace(tmp_path))
        answers = [text for role, text in turns if role == "assistant"]
        assert len(answers) >= len(OUT_OF_DOMAIN) and set(answers) == {FALLBACK}, answers
        return
    audio = []
    for clip in clips:
        with wave.open(str(clip)) as wav:
            assert wav.getframerate() == RATE
            audio.append(np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16))
    conversation(tmp_path / "in.wav", audio)
    turns = await assistant_turns(tmp_path, monkeypatch)
    answers = [text for role, text in turns if role == "assistant"]
    # A clip may be heard as one utterance or several; every answer is the fallback.
    assert len(answers) >= len(clips), turns
    assert set(answers) == {FALLBACK}, turns


def at_the_audio_pace(tmp_path: Path, search: str = "fast") -> Path:
    """The assistant on files, its audio read at the audio's pace, as a served session hears it: fast-forwarded on a
    busy machine, VAD's start can reach the STT after its pre-roll has dropped a sentence's first words, and the
    rest of a sentence may pass for a phrase (with the fast search's fewer words most of all)."""
    spec = yaml.safe_load(ASSISTANT.read_text())
    spec["processors"]["stt"]["out_of_domain_search"] = search
    spec["transport"]["input"] = "${FRAMEGRAPH_INPUT}"
    spec["transport"]["output"] = "${FRAMEGRAPH_OUT}/assistant.wav"
    spec["transport"]["transcript"] = "${FRAMEGRAPH_OUT}/assistant.jsonl"
    spec["transport"]["realtime"] = True
    config = tmp_path / "assistant.yaml"
    config.write_text(yaml.safe_dump(spec))
    return config


@pytest.mark.parametrize("search", ["fast", "exact"])
async def test_both_open_pass_searches_reject_a_sentence_and_keep_a_phrase(tmp_path, monkeypatch, search):
    config = at_the_audio_pace(tmp_path, search)
    sentence = "please turn on the lights in the kitchen"
    clips = [np.frombuffer(await synthesize_pcm(text, sample_rate=RATE), dtype=np.int16)
             for text in (sentence, "tell me a joke")]
    conversation(tmp_path / "in.wav", clips)
    turns = await assistant_turns(tmp_path, monkeypatch, config)
    assert [text for role, text in turns if role == "assistant"] == [FALLBACK, reply_to("tell me a joke")], turns
    heard = turns[0][1].split()
    assert heard and heard != ["tell", "me", "a", "joke"]  # what the open pass heard, not the nearest phrase
    if search == "exact":  # pocketsphinx's own beams: the whole sentence transcribed, not a fragment
        assert len(heard) >= 4, heard
