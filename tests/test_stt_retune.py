"""The pocketsphinx STT under load: a running decoder takes the agent's degraded search and gives it back.

Real decoder processes (the shared host and its forked children), real
speech (espeak-ng), the load level's own ``retune`` (what the server calls
when its level enters or leaves DEGRADED). A switch takes effect at the next
utterance, never inside one; each final transcript says, in
``result["settings"]``, what its decoder decoded it with.
"""

from dataclasses import asdict

import pytest
from pipecat.frames.frames import (
    InterimTranscriptionFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)

from pipelines.errors import ConfigErrors
from pipelines.server.load_level import retune
from pipelines.testing import AgentHarness
from pipelines.validate import load_agent_text
from processors.stt.decoder_pool import HostConfig, Search, decoder_host
from processors.tts.espeak import synthesize_pcm

RATE = 16000
PHRASES = ["what is the weather like today", "turn left", "what time is it", "stop"]

AGENT = """\
version: 1
name: stt
transport: {{type: synthetic, audio_in_sample_rate: 16000}}
processors:
  stt: {stt}
pipeline: [input, stt, output]
backpressure:
  degraded:
    stt: {degraded}
"""


def agent(stt: str, degraded: str) -> str:
    return AGENT.format(stt=stt, degraded=degraded)


async def _utterance(h: AgentHarness, pcm: bytes, between=None) -> tuple[TranscriptionFrame, int]:
    """Says ``pcm`` between VAD's start and stop; ``between()`` runs halfway through.

    Returns its final transcript and how many interim ones came before it.
    """
    silence = b"\0" * (RATE // 5 * 2)
    out = h.probe("stt")
    half = len(pcm) // 4 * 2
    await h.inject_audio(silence, sample_rate=RATE)
    await h.inject(VADUserStartedSpeakingFrame(start_secs=0.2), at="stt", upstream=True)
    await h.inject_audio(pcm[:half], sample_rate=RATE, realtime=True)
    if between is not None:
        between()
    await h.inject_audio(pcm[half:] + silence, sample_rate=RATE, realtime=True)
    await h.inject(VADUserStoppedSpeakingFrame(stop_secs=0.2), at="stt", upstream=True)
    final = await out.wait_for(TranscriptionFrame, timeout=10.0)
    return final, len(out.of_type(InterimTranscriptionFrame))


OWN = {"search": {"max_hmm_per_frame": 3000, "accurate": False, "open_pass": "exact"}, "interim_secs": 0.2}
DEGRADED = {"search": {"max_hmm_per_frame": 1500, "accurate": False, "open_pass": "fast"}, "interim_secs": 0}


@pytest.mark.parametrize(("stt", "heard"), [
    # The language model: each search a language-model search the host made before forking. It hears
    # espeak's sentence roughly, the narrower search worse ("what is the weather like to do you", "what is
    # unwed unlike do ye"): its first word and as many words as were said.
    ("{type: pocketsphinx, interim_secs: 0.2, out_of_domain_search: exact}",
     lambda raw: raw.split()[:1] == ["what"] and len(raw.split()) >= 5),
    # A closed domain: the grammar's width set live, the out-of-domain pass's searches switched.
    (f"{{type: pocketsphinx, phrases: {PHRASES}, interim_secs: 0.2, out_of_domain_search: exact}}",
     lambda raw: raw == "what is the weather like today"),
], ids=["language-model", "phrases"])
async def test_a_running_decoder_switches_to_its_degraded_search_between_utterances_and_back(stt, heard):
    speech = await synthesize_pcm("what is the weather like today", sample_rate=RATE)
    loaded = load_agent_text(agent(stt, "{max_hmm_per_frame: 1500, interim_secs: 0, out_of_domain_search: fast}"))
    async with AgentHarness(loaded) as h:
        said = [await _utterance(h, speech)]
        # The level enters DEGRADED while the user speaks: this utterance finishes as it began.
        said.append(await _utterance(h, speech, between=lambda: retune(loaded, h.built, True)))
        said.append(await _utterance(h, speech))
        # The level leaves DEGRADED between utterances: the next one has the agent's own settings back.
        retune(loaded, h.built, False)
        said.append(await _utterance(h, speech))
    assert [final.result["settings"] for final, _ in said] == [OWN, OWN, DEGRADED, OWN]
    assert [interims > 0 for _, interims in said] == [True, True, False, True]
    # The words heard whatever the search: nothing lost at a switch.
    assert all(heard(final.result["raw"]) for final, _ in said), [final.result["raw"] for final, _ in said]


async def test_a_session_built_with_its_degraded_params_shares_the_host_and_switches_back():
    """A session that starts at DEGRADED is built with the degraded params: same host, both searches in it."""
    speech = await synthesize_pcm("turn left", sample_rate=RATE)
    text = agent(f"{{type: pocketsphinx, phrases: {PHRASES}}}", "{max_hmm_per_frame: 1500}")
    loaded = load_agent_text(text)
    from pipelines.server.load_level import degraded

    async with AgentHarness(degraded(loaded)) as h:
        started, _ = await _utterance(h, speech)
        retune(loaded, h.built, False)
        recovered, _ = await _utterance(h, speech)
    assert h.built.processors["stt"]._host_config == HostConfig(
        searches=(Search(), Search(max_hmm_per_frame=1500)), language_model=False, domain_check=True)
    assert decoder_host(h.built.processors["stt"]._host_config).alive
    assert [f.result["settings"]["search"]["max_hmm_per_frame"] for f in (started, recovered)] == [1500, 3000]
    assert [f.text for f in (started, recovered)] == ["turn left"] * 2


@pytest.mark.parametrize(("degraded", "expected"), [
    ("{max_hmm: 1500}", "backpressure.degraded.stt.max_hmm"),
    ("{max_hmm_per_frame: 10}", "backpressure.degraded.stt.max_hmm_per_frame"),
    ("{out_of_domain_search: narrow}", "backpressure.degraded.stt.out_of_domain_search"),
    ("{interim_secs: soon}", "backpressure.degraded.stt.interim_secs"),
])
def test_a_bad_degraded_stt_param_is_one_line_naming_its_key(degraded, expected):
    with pytest.raises(ConfigErrors) as raised:
        load_agent_text(agent("{type: pocketsphinx}", degraded), "agent.yaml")
    (error,) = raised.value.errors
    assert expected in str(error) and "\n" not in str(error) and error.mark.line == 9, str(error)


async def test_a_one_pass_and_a_two_pass_search_both_decode_in_one_decoder():
    """``accurate: true`` declared, ``false`` degraded: both searches in one decoder, made as the host makes them."""
    from pocketsphinx import Decoder

    from processors.stt.decoder_host import SearchSet, decoder_kwargs, made_in_order, main_search

    speech = await synthesize_pcm("what is the weather like today", sample_rate=RATE)
    own, other = made_in_order([asdict(Search(accurate=True)), asdict(Search(accurate=False))])
    # The host's settings at pocketsphinx's default log level: the level is global to the process.
    searches = SearchSet(Decoder(**decoder_kwargs(own) | {"loglevel": "WARN"}), main_search(own))
    searches.add(main_search(other))
    heard = []
    for search in (Search(accurate=True), Search(accurate=False), Search(accurate=True)):
        searches.use(main_search(asdict(search)))
        searches.decoder.start_utt()
        for offset in range(0, len(speech), 640):  # streamed in 20 ms chunks, as a session's decoder gets it
            searches.decoder.process_raw(speech[offset:offset + 640], False, False)
        searches.decoder.end_utt()
        heard.append(searches.decoder.hyp().hypstr)
    assert all(text.startswith("what is the weather") for text in heard), heard


def test_a_degraded_param_a_running_stt_cannot_take_is_noted_with_its_line():
    """``preroll_secs`` reaches sessions that start at DEGRADED; validation says so, naming what does switch."""
    loaded = load_agent_text(agent("{type: pocketsphinx_stt}", "{max_hmm_per_frame: 1500, preroll_secs: 0.5}"),
                             "agent.yaml")
    (note,) = loaded.notes
    assert note.key == "backpressure.degraded.stt.preroll_secs" and note.mark.line == 9
    assert "only sessions that start at DEGRADED" in str(note) and "max_hmm_per_frame" in str(note)
