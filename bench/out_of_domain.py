"""Out-of-domain rejection of the default agent: rejected / in-domain kept.

The whole default agent (configs/assistant.yaml: Silero VAD, pocketsphinx
restricted to seven phrases, the scripted LLM, espeak-ng) runs on the file
transport, once per clip, and its transcript says what it answered:

- out of domain: every human clip in ../shared/audio/human (audiobook
  sentences and a command, none of them a phrase), and a few espeak
  sentences that are not phrases: each should get the fallback;
- in domain: configs/audio/question.wav and every phrase spoken by espeak-ng
  in three voices at three rates: each should get its own answer.

``--no-check`` runs the same with ``out_of_domain_margin: null`` (the
grammar alone, as before the check), for comparison.

    .venv/bin/python bench/out_of_domain.py [--no-check] [--audio DIR]
"""

import argparse
import asyncio
import json
import os
import re
import tempfile
import time
import wave
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
ASSISTANT = ROOT / "configs" / "assistant.yaml"
#: Recorded human clips: FRAMEGRAPH_HUMAN_AUDIO, as every bench (bench/listening_kit.py); none on a fresh clone.
HUMAN_AUDIO = Path(os.environ.get("FRAMEGRAPH_HUMAN_AUDIO", ROOT.parent / "shared" / "audio" / "human"))
VOICES = ("en-us", "en-us+f3", "en")
RATES = (140, 175, 220)
OUT_OF_DOMAIN_SENTENCES = (
    "please turn on the lights in the kitchen",
    "how far is the moon from the earth",
    "I would like to order a pizza",
    "the quick brown fox jumps over the lazy dog",
)


def write_wav(path: Path, pcm: bytes, rate: int = 16000, pad_secs: float = 0.5) -> None:
    """A 16-bit mono WAV of ``pcm`` with silence around it."""
    pad = bytes(2 * int(rate * pad_secs))
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pad + pcm + pad)


def assistant_config(folder: Path, check: bool) -> Path:
    """configs/assistant.yaml, with the out-of-domain check off unless ``check``."""
    spec = yaml.safe_load(ASSISTANT.read_text())
    if not check:
        spec["processors"]["stt"]["out_of_domain_margin"] = None
    spec["transport"]["input"] = "${FRAMEGRAPH_INPUT}"
    spec["transport"]["output"] = "${FRAMEGRAPH_OUT}/assistant.wav"
    spec["transport"]["transcript"] = "${FRAMEGRAPH_OUT}/assistant.jsonl"
    path = folder / "assistant.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


async def answer(config: Path, wav: Path, out: Path) -> tuple[str, str]:
    """(what the agent heard, what it answered) for one clip; several turns are joined with ' | '."""
    from pipecat.workers.runner import WorkerRunner

    from pipelines.builder import build_agent
    from pipelines.validate import load_agent

    os.environ["FRAMEGRAPH_INPUT"] = str(wav)
    os.environ["FRAMEGRAPH_OUT"] = str(out)
    runner = WorkerRunner(handle_sigint=False, force_gc=True)
    await runner.add_workers(build_agent(load_agent(config)).worker())
    await asyncio.wait_for(runner.run(), 120)
    turns = [json.loads(line) for line in (out / "assistant.jsonl").read_text().splitlines()]
    heard = " | ".join(t["text"] for t in turns if t["role"] == "user")
    said = " | ".join(t["text"] for t in turns if t["role"] == "assistant")
    return heard, said


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-check", action="store_true", help="the grammar alone (out_of_domain_margin: null)")
    parser.add_argument("--audio", type=Path, default=HUMAN_AUDIO, help="folder of human clips (all out of domain)")
    args = parser.parse_args()
    from processors.tts.espeak import synthesize_pcm

    spec = yaml.safe_load(ASSISTANT.read_text())
    phrases = spec["processors"]["stt"]["phrases"]
    llm = spec["processors"]["llm"]
    rules = [(re.compile(r["match"], re.IGNORECASE), r["reply"]) for r in llm["rules"]]
    fallback = llm["fallback"]

    def expected(text: str) -> str:
        return next((reply for pattern, reply in rules if pattern.search(text)), fallback)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        config = assistant_config(tmp, check=not args.no_check)
        out_of_domain = [(clip.stem, clip) for clip in sorted(args.audio.glob("*.wav"))]
        print(f"clips: {len(out_of_domain)} recorded clips from {args.audio}" if out_of_domain else
              f"clips: no recorded clips in {args.audio} (FRAMEGRAPH_HUMAN_AUDIO or --audio names a folder of WAVs): "
              "espeak sentences only", flush=True)
        for i, sentence in enumerate(OUT_OF_DOMAIN_SENTENCES):
            write_wav(tmp / f"ood{i}.wav", await synthesize_pcm(sentence, sample_rate=16000))
            out_of_domain.append((f"espeak: {sentence}", tmp / f"ood{i}.wav"))
        in_domain = [("question.wav", ROOT / "configs" / "audio" / "question.wav", "what is the weather like today")]
        for voice in VOICES:
            for rate in RATES:
                for i, phrase in enumerate(phrases):
                    path = tmp / f"{voice}_{rate}_{i}.wav"
                    write_wav(path, await synthesize_pcm(phrase, voice=voice, rate=rate, sample_rate=16000))
                    in_domain.append((f"{voice} {rate}: {phrase}", path, phrase))

        started = time.monotonic()
        rejected = human_rejected = human = 0
        print("out of domain (should get the fallback):")
        for name, wav in out_of_domain:
            heard, said = await answer(config, wav, tmp)
            ok = said == fallback
            rejected += ok
            if not name.startswith("espeak"):
                human, human_rejected = human + 1, human_rejected + ok
            print(f"  {'rejected' if ok else 'ANSWERED'}  {name[:48]:48} heard: {heard[:60]}")
        kept = 0
        by_voice: dict[str, list[int]] = {}
        print("in domain (should get its answer):")
        for name, wav, phrase in in_domain:
            heard, said = await answer(config, wav, tmp)
            ok = said == expected(phrase)
            kept += ok
            tally = by_voice.setdefault(name.split(":")[0].rsplit(" ", 1)[0], [0, 0])
            tally[0], tally[1] = tally[0] + ok, tally[1] + 1
            if not ok:
                print(f"  MISSED    {name[:48]:48} heard: {heard[:60]}")
        mode = "grammar alone" if args.no_check else "with the out-of-domain check"
        print(f"\n{mode}: out of domain rejected {rejected}/{len(out_of_domain)} "
              f"(human clips {human_rejected}/{human}); in domain kept {kept}/{len(in_domain)} "
              + ", ".join(f"{voice} {k}/{n}" for voice, (k, n) in by_voice.items())
              + f"; {time.monotonic() - started:.0f} s, load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    asyncio.run(main())
