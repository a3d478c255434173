"""Wire format between an agent's STT service and its decoder process.

Messages are length-prefixed: one tag byte, a 4-byte big-endian payload
length, then the payload. Audio travels as raw 16-bit PCM; everything else as
UTF-8 JSON. The format is tiny on purpose: both sides are ours, and a plain
socket keeps decoding entirely outside the agent's process and GIL.
"""

import json
import struct
from typing import Any

HEADER = struct.Struct(">cI")

# Agent -> decoder.
CONFIG = b"C"  # {"sample_rate", "grammar", "preroll_secs", "interim_secs", "out_of_domain_margin", "search"}
AUDIO = b"A"  # raw 16-bit mono PCM at the configured sample rate
START = b"S"  # begin an utterance (with the pre-roll kept so far)
END = b"E"  # end the utterance: the decoder answers with FINAL
RETUNE = b"T"  # {"search", "interim_secs"}: used from the next START on (never inside an utterance)

# Decoder -> agent.
READY = b"R"  # {} after CONFIG was applied
ERROR = b"X"  # {"message"}: CONFIG could not be applied
INTERIM = b"I"  # {"text"}
FINAL = b"F"  # {"text", "words": [[word, start_secs, end_secs], ...], "out_of_domain"?: true, "settings"}
# "search" (CONFIG, RETUNE): {"max_hmm_per_frame", "accurate", "open_pass"}, one of the host's searches;
# "settings" (FINAL): the "search" and "interim_secs" the utterance was decoded with.


def encode(tag: bytes, payload: bytes) -> bytes:
    """Frame one message."""
    return HEADER.pack(tag, len(payload)) + payload


def encode_json(tag: bytes, value: Any) -> bytes:
    """Frame one JSON message."""
    return encode(tag, json.dumps(value).encode())
