"""The decoder keeps a burst of audio that arrived before VAD's start, not only its last ``preroll_secs``.

Audio a WebRTC transport held while the agent's pipeline started reaches
the decoder all at once; VAD's start comes after it. With a pre-roll cut to
its last second, a question said at once lost its first words ("what is
the") and was rejected as out of domain (tests/test_webrtc_early_audio.py
under load).
"""

import json
import socket

from pocketsphinx import Decoder

from processors.stt import protocol
from processors.stt.decoder_host import SearchSet, StreamDecoder, decoder_kwargs, read_message
from processors.tts.espeak import synthesize_pcm

RATE = 16000
CHUNK = 640  # 20 ms


async def test_a_burst_before_vads_start_is_decoded_from_its_first_word():
    question = await synthesize_pcm("what is the weather like today", sample_rate=RATE)
    audio = bytes(int(0.3 * RATE) * 2) + question + bytes(int(0.2 * RATE) * 2)
    ours, theirs = socket.socketpair()
    with ours, theirs:
        # The host's settings at pocketsphinx's default log level: the level is global to the process.
        settings = decoder_kwargs({"max_hmm_per_frame": 3000, "accurate": False}) | {"loglevel": "WARN"}
        decoder = StreamDecoder(SearchSet(Decoder(**settings)), theirs)
        decoder.configure({"sample_rate": RATE, "preroll_secs": 1.0, "interim_secs": 0})
        for offset in range(0, len(audio), CHUNK):  # all at once: faster than real time
            decoder.audio(audio[offset:offset + CHUNK])
        decoder.start()
        decoder.end()
        replies = ours.makefile("rb")
        messages = [read_message(replies) for _ in range(2)]
    assert [tag for tag, _ in messages] == [protocol.READY, protocol.FINAL]
    words = json.loads(messages[1][1])["text"].split()
    assert words[:1] == ["what"] and len(words) >= 5, words
