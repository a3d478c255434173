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

``--degraded CONFIG`` compares the agent's pocketsphinx STT as declared with
its ``backpressure.degraded`` params (what a running session switches to at
the DEGRADED load level, docs/backpressure.md): one decoder holds both
searches, as the decoder host makes them, and decodes each clip with one then
the other (so the machine's load falls on both alike), with an interim
hypothesis every ``interim_secs`` as a session's decoder makes them. With
``--open-pass``, the out-of-domain pass's searches (the CPU a closed-domain
agent spends beside its grammar) instead of the language-model STT's.

    .venv/bin/python bench/stt_accuracy.py [--accurate] [--max-hmm-per-frame 3000] [--open-pass]
    .venv/bin/python bench/stt_accuracy.py --degraded configs/assistant.yaml [--open-pass]
"""

import argparse
import asyncio
import os
import re
import time
from dataclasses import asdict
from pathlib import Path

from listening_kit import HUMAN_AUDIO, bench_clips

from pipelines.server.load_level import degraded
from pipelines.validate import load_agent
from processors.stt.decoder_host import (
    OPEN_PASS_BEAMS,
    SearchSet,
    decoder_kwargs,
    made_in_order,
    main_search,
    open_search,
)
from processors.stt.decoder_pool import Search

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


def decode(decoder, pcm: bytes, interim_secs: float = 0) -> tuple[str, float, float]:
    """(hypothesis, CPU seconds for the whole clip, wall seconds of the final ``end_utt``).

    With ``interim_secs``, an interim hypothesis every that many seconds of audio, as the agent's decoder makes.
    """
    interim_bytes = int(interim_secs * 32000)
    since_interim = 0
    cpu_start = time.process_time()
    decoder.start_utt()
    for offset in range(0, len(pcm), CHUNK_BYTES):
        decoder.process_raw(pcm[offset:offset + CHUNK_BYTES], False, False)
        since_interim += CHUNK_BYTES
        if interim_bytes and since_interim >= interim_bytes:
            since_interim = 0
            decoder.hyp()
    final_start = time.perf_counter()
    decoder.end_utt()
    final_secs = time.perf_counter() - final_start
    hyp = decoder.hyp()
    return (hyp.hypstr if hyp else ""), time.process_time() - cpu_start, final_secs


def load() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def compare_degraded(config: Path, clips: list, open_pass: bool) -> None:
    """The agent's STT as declared against its degraded params: one decoder, both searches, clips alternating."""
    from pocketsphinx import Decoder

    agent = load_agent(config)
    stt = next((pid for pid, c in agent.processors.items() if c.type.name == "pocketsphinx_stt"), None)
    if stt is None or stt not in agent.spec.backpressure.degraded:
        raise SystemExit(f"{config}: no pocketsphinx STT with backpressure.degraded params")
    variants = {"declared": agent.processors[stt].params, "degraded": degraded(agent).processors[stt].params}
    searches = {name: asdict(Search.of(params)) for name, params in variants.items()}
    settings = open_search if open_pass else main_search
    own, other = made_in_order(list(searches.values()))
    decoder = Decoder(**decoder_kwargs(own), **(OPEN_PASS_BEAMS[own["open_pass"]] if open_pass else {}))
    made = SearchSet(decoder, settings(own))
    made.add(settings(other))
    tally = {name: [0, 0, 0.0, 0.0] for name in variants}  # errors, words, cpu, audio
    print(f"{config} ({'out-of-domain pass' if open_pass else 'language model'}), {load()}")
    for clip in clips:
        reference = normalize(clip.text)
        for name, params in variants.items():
            made.use(settings(searches[name]))
            text, cpu, _ = decode(decoder, clip.pcm, params.interim_secs)
            counts = tally[name]
            counts[0] += edit_distance(reference, normalize(text))
            counts[1] += len(reference)
            counts[2] += cpu
            counts[3] += len(clip.pcm) / 32000
            print(f"{clip.name:10} {name:8}  | {text}")
    for name, (errors, words, cpu, audio) in tally.items():
        params = variants[name]
        print(f"{name:8} max_hmm_per_frame={params.max_hmm_per_frame} accurate={params.accurate} "
              f"out_of_domain_search={params.out_of_domain_search} interim_secs={params.interim_secs}: "
              f"WER {errors / words:.1%} ({errors}/{words} words), CPU {cpu / audio:.3f} s per second of audio")
    ratio = (tally["degraded"][2] / tally["degraded"][3]) / (tally["declared"][2] / tally["declared"][3])
    print(f"degraded / declared CPU: {ratio:.2f}; {load()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accurate", action="store_true", help="add the fwdflat and bestpath passes")
    parser.add_argument("--max-hmm-per-frame", type=int, default=3000)
    parser.add_argument("--open-pass", action="store_true", help="the out-of-domain check's fast beams")
    parser.add_argument("--audio", type=Path, default=HUMAN_AUDIO, help="folder of X.wav + X.txt")
    parser.add_argument("--degraded", type=Path, metavar="CONFIG",
                        help="compare CONFIG's pocketsphinx STT with its backpressure.degraded params")
    args = parser.parse_args()
    from pocketsphinx import Decoder

    clips = [clip for clip in asyncio.run(bench_clips(args.audio)) if clip.text]
    if not clips:
        raise SystemExit(f"no clip in {args.audio} has its words (X.txt beside X.wav)")
    if args.degraded:
        compare_degraded(args.degraded, clips, args.open_pass)
        return
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
          f"final latency median {sorted(finals)[len(finals) // 2] * 1000:.0f} ms, max {max(finals) * 1000:.0f} ms; "
          f"{load()}")


if __name__ == "__main__":
    main()
