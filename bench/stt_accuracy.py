"""Word error rate and real-time factor of the pocketsphinx STT on the human clips.

Each ``X.wav`` in ``FRAMEGRAPH_HUMAN_AUDIO`` (default ../shared/audio/human;
without clips, sentences spoken by espeak-ng, bench/listening_kit.py) is decoded as the agent
decodes it: streamed in 20 ms chunks through the same decoder settings, then
ended. Reported per clip and overall: the hypothesis, word errors against
``X.txt``, the real-time factor (decoding CPU seconds per second of audio)
and the final latency (``end_utt``, what the agent waits after VAD's stop).
Written forms are normalized before scoring ("mr" is "mister").

``--open-pass`` decodes with the out-of-domain check's ``fast`` beams
(``OPEN_PASS_BEAMS``), as its language-model pass does beside a grammar.

    .venv/bin/python bench/stt_accuracy.py [--accurate] [--max-hmm-per-frame 3000] [--open-pass]
"""

import argparse
import asyncio
import re
import time
from pathlib import Path

from listening_kit import HUMAN_AUDIO, bench_clips

from processors.stt.decoder_host import OPEN_PASS_BEAMS, decoder_kwargs

CHUNK_BYTES = 640  # 20 ms at 16 kHz
NORMALIZE = {"mr": "mister", "mrs": "missus", "dr": "doctor"}


def edit_distance(reference: list[str], hypothesis: list[str]) -> int:
    """Word-level Levenshtein distance (substitutions, insertions, deletions)."""
    row = list(range(len(hypothesis) + 1))
    for i, ref_word in enumerate(reference, 1):
        previous, row[0] = row[:], i
        for j, hyp_word in enumerate(hypothesis, 1):
            row[j] = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (ref_word != hyp_word))
    return row[-1]


def normalize(text: str) -> list[str]:
    """Lower-case words with written forms spelled out."""
    return [NORMALIZE.get(w, w) for w in re.sub(r"[^\w\s']", " ", text.lower()).split()]


def decode(decoder, pcm: bytes) -> tuple[str, float, float]:
    """(hypothesis, CPU seconds for the whole clip, wall seconds of the final ``end_utt``)."""
    cpu_start = time.process_time()
    decoder.start_utt()
    for offset in range(0, len(pcm), CHUNK_BYTES):
        decoder.process_raw(pcm[offset:offset + CHUNK_BYTES], False, False)
    final_start = time.perf_counter()
    decoder.end_utt()
    final_secs = time.perf_counter() - final_start
    hyp = decoder.hyp()
    return (hyp.hypstr if hyp else ""), time.process_time() - cpu_start, final_secs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accurate", action="store_true", help="add the fwdflat and bestpath passes")
    parser.add_argument("--max-hmm-per-frame", type=int, default=3000)
    parser.add_argument("--open-pass", action="store_true", help="the out-of-domain check's fast beams")
    parser.add_argument("--audio", type=Path, default=HUMAN_AUDIO, help="folder of X.wav + X.txt")
    args = parser.parse_args()
    from pocketsphinx import Decoder

    clips = [clip for clip in asyncio.run(bench_clips(args.audio)) if clip.text]
    if not clips:
        raise SystemExit(f"no clip in {args.audio} has its words (X.txt beside X.wav)")
    beams = OPEN_PASS_BEAMS["fast"] if args.open_pass else {}
    decoder = Decoder(**decoder_kwargs({"max_hmm_per_frame": args.max_hmm_per_frame, "accurate": args.accurate}), **beams)
    errors = words = 0
    cpu_total = audio_total = 0.0
    finals = []
    for clip in clips:
        pcm = clip.pcm
        reference = normalize(clip.text)
        text, cpu, final = decode(decoder, pcm)
        clip_errors = edit_distance(reference, normalize(text))
        duration = len(pcm) / 32000
        errors, words = errors + clip_errors, words + len(reference)
        cpu_total, audio_total = cpu_total + cpu, audio_total + duration
        finals.append(final)
        print(f"{clip.name:10} {duration:5.2f}s  WER {clip_errors / len(reference):5.1%}  "
              f"RTF {cpu / duration:.3f}  final {final * 1000:4.0f} ms  | {text}")
    mode = ("accurate" if args.accurate else "fast") + (", open-pass beams" if args.open_pass else "")
    print(f"\n{mode}, max_hmm_per_frame={args.max_hmm_per_frame}: WER {errors / words:.1%} "
          f"({errors}/{words} words), RTF {cpu_total / audio_total:.3f}, "
          f"final latency median {sorted(finals)[len(finals) // 2] * 1000:.0f} ms, max {max(finals) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
