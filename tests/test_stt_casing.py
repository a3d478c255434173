"""pocketsphinx transcripts written like text: a phrase as the config spells it, other speech in sentence case."""

from pipecat.frames.frames import TranscriptionFrame, VADUserStartedSpeakingFrame, VADUserStoppedSpeakingFrame

from pipelines.testing import AgentHarness
from processors.stt.grammar import PhraseSpelling, sentence_case
from processors.tts.espeak import synthesize_pcm

AGENT = """
version: 1
name: stt
transport: {{type: synthetic, audio_in_sample_rate: 16000}}
processors:
  stt: {stt}
pipeline: [input, stt, output]
"""


def test_a_phrase_is_written_as_the_phrase_list_spells_it():
    spelling = PhraseSpelling(["what is the capital of Germany", "Turn left!", "what time is it"])
    assert spelling.write("what is the capital of germany", in_grammar=True) == "what is the capital of Germany"
    assert spelling.write("turn left", in_grammar=True) == "Turn left!"
    assert spelling.write("what time is it", in_grammar=True) == "what time is it"  # the default agent's rules match it


def test_other_speech_gets_sentence_case_and_a_final_mark():
    spelling = PhraseSpelling(["turn left"])
    # Rejected as out of domain: written as heard, not as the phrase.
    assert spelling.write("turn left", in_grammar=False) == "Turn left."
    assert spelling.write("what is going on here", in_grammar=True) == "What is going on here?"
    assert sentence_case("i think i'm lost") == "I think I'm lost."
    assert sentence_case("can you help me") == "Can you help me?"
    assert sentence_case("") == ""


async def _final(stt: str, text: str) -> TranscriptionFrame:
    speech = await synthesize_pcm(text)
    silence = b"\0" * 6400
    async with AgentHarness.from_text(AGENT.format(stt=stt)) as h:
        out = h.probe("stt")
        await h.inject_audio(silence)
        await h.inject(VADUserStartedSpeakingFrame(start_secs=0.2), at="stt", upstream=True)
        await h.inject_audio(speech + silence, realtime=True)
        await h.inject(VADUserStoppedSpeakingFrame(stop_secs=0.2), at="stt", upstream=True)
        return await out.wait_for(TranscriptionFrame, timeout=15.0)


async def test_an_agent_restores_the_phrase_spelling_and_keeps_the_raw_hypothesis():
    final = await _final("{type: pocketsphinx, phrases: [what is the capital of Germany, turn left]}",
                         "what is the capital of germany")
    assert final.text == "what is the capital of Germany"
    assert final.result["raw"] == "what is the capital of germany"
    assert [w["word"] for w in final.result["words"]][-1] == "germany"


async def test_open_vocabulary_speech_comes_in_sentence_case_with_a_mark():
    final = await _final("{type: pocketsphinx}", "go forward ten meters and then turn left at the door")
    raw = final.result["raw"]
    assert raw == raw.lower() and len(raw.split()) >= 5
    assert final.text == sentence_case(raw) and final.text[0].isupper() and final.text[-1] in ".?"
