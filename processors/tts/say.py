"""``framegraph say TEXT -o speech.wav``: speak text with espeak-ng into a WAV.

A quick way to make user audio for the ``file`` transport (and for tests)
with nothing but the wheels framegraph installs.
"""

import asyncio
import sys
from pathlib import Path

from pipelines.audio import USER_SAMPLE_RATE, write_wav
from pipelines.errors import missing_extra


def cmd_say(args) -> int:
    """Writes ``args.text`` spoken by espeak-ng to ``args.output``, with leading and trailing silence."""
    try:
        from processors.tts.espeak import UnknownVoiceError, synthesize_pcm
    except ImportError as e:
        raise missing_extra("say", "speech", e) from None
    try:
        speech = asyncio.run(synthesize_pcm(args.text, voice=args.voice, rate=args.rate, sample_rate=args.sample_rate))
    except UnknownVoiceError as e:
        print(f"--voice: {e}", file=sys.stderr)
        return 1
    pad = bytes(2 * int(args.sample_rate * args.pad))
    try:
        write_wav(args.output, pad + speech + pad, args.sample_rate)
    except OSError as e:
        print(f"{args.output}: {e.strerror}", file=sys.stderr)
        return 1
    print(f"wrote {args.output} ({len(speech) / 2 / args.sample_rate:.1f} s of speech)")
    return 0


def add_parser(subparsers) -> None:
    """Adds ``say`` to the ``framegraph`` command."""
    p = subparsers.add_parser("say", help="speak text into a WAV with espeak-ng",
                              description="Speak text with espeak-ng into a 16-bit mono WAV.")
    p.add_argument("text")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="WAV")
    p.add_argument("--voice", default="en-us", help="espeak-ng voice (default en-us)")
    p.add_argument("--rate", type=int, default=175, help="words per minute (default 175)")
    p.add_argument("--sample-rate", type=int, default=USER_SAMPLE_RATE, help=f"Hz (default {USER_SAMPLE_RATE})")
    p.add_argument("--pad", type=float, default=0.5, help="seconds of silence before and after (default 0.5)")
    p.set_defaults(func=cmd_say)
