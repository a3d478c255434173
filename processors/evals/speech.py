"""Offline speech services for pipecat's eval harness (``pipecat eval run``), named by scenario files.

pipecat's harness speaks the user's turns with a TTS and transcribes the
bot's audio with an STT, both built from the scenario's ``user.speech`` and
``judge.transcription`` blocks; its built-in ones (Kokoro, Moonshine,
Whisper) download their weights. These factories build framegraph's
offline ones instead, so scenarios run with no network::

    user:
      modality: audio
      speech: {factory: processors.evals.speech.voice, voice: en-us, rate: 150}
    judge:
      modality: audio
      transcription:
        factory: processors.evals.speech.transcriber
        phrases: ["Hello! Ask me about the weather.", "It is sunny and warm today."]

``voice`` is espeak-ng (``processors.tts.espeak``). ``transcriber`` is
pocketsphinx (``processors.stt``): with ``phrases`` it hears any sequence of
their sentences (a bot's scripted replies: a few percent word errors on
synthetic speech), without them the open vocabulary (70% and more on espeak
speech, docs/listening.md).
"""

import re
from typing import Any

from processors.stt.grammar import GRAMMAR_NAME, check_grammar

_SENTENCE_END = re.compile(r"[.!?]+")
_WORD = re.compile(r"[a-z0-9']+")


def voice(config: dict[str, Any]):
    """The user's voice: espeak-ng, ``voice`` (en-us) at ``rate`` words a minute (175)."""
    from processors.tts.espeak import EspeakTTSService

    return EspeakTTSService(voice=str(config.get("voice", "en-us")), rate=int(config.get("rate", 175)))


def sentences_grammar(phrases: list[str]) -> str:
    """A JSGF grammar hearing one or more of the sentences of ``phrases``, in any order."""
    sentences = {" ".join(_WORD.findall(s.lower())) for p in phrases for s in _SENTENCE_END.split(p)}
    body = " | ".join(f"( {s} )" for s in sorted(sentences) if s)
    if not body:
        raise ValueError("judge.transcription.phrases: no words to hear")
    return f"#JSGF V1.0;\ngrammar {GRAMMAR_NAME};\n<sentence> = {body};\npublic <phrase> = <sentence>+;\n"


def transcriber(config: dict[str, Any]):
    """The bot's audio transcribed by pocketsphinx: its ``phrases`` (sentences in any sequence), or open vocabulary."""
    from processors.stt.decoder_pool import HostConfig
    from processors.stt.pocketsphinx import PocketsphinxSTTService

    phrases = config.get("phrases")
    grammar = None
    if phrases:
        grammar = sentences_grammar([str(p) for p in phrases])
        check_grammar(grammar, "judge.transcription.phrases")
    return PocketsphinxSTTService(host_config=HostConfig(), grammar=grammar, interim_secs=0)
