"""Load: N talking WebSocket sessions plus M idle ones against ``serve --workers 1``, ``--workers N`` and plain pipecat.

Each target is a server in its own process tree, serving the default agent
(``configs/assistant.yaml`` unless ``--config``) over WebSocket on loopback:

- ``framegraph serve --workers 1`` (sessions in the server's own process),
- ``framegraph serve --workers N`` (N worker processes behind the front),
- plain pipecat: a FastAPI app written here with pipecat's own
  ``FastAPIWebsocketTransport`` and protobuf serializer, one ``PipelineWorker``
  per socket, the same processors (Silero VAD, Smart Turn, pocketsphinx,
  the scripted LLM, espeak) without framegraph's server, sessions, store or
  interruption guard.

Against each, N talking clients (``transports.clients.talk.Talker``) say
the human clips in ../shared/audio/human (when present), the bundled
configs/audio/question.wav and espeak questions, at real speed, turn after
turn for ``--duration`` seconds: a turn is the clip, then silence (an open
microphone) until the bot has answered and been quiet for 0.6 s. M more
clients connect and stay silent (microphone muted: no audio sent). Per
target it prints the sessions held to the end, errors (refused or dropped
connections, turns unanswered within 8 s), the time from the speech's end
(from the clip's energy) to the first loud bot audio received, p50/p95
(turns the bot answered early, during a pause inside a clip, are counted
apart as "early", without a latency), and
the server tree's CPU (cores: all its processes; main: its main process
alone, the front with workers) and memory (PSS) per session, and the
clients' CPU; then the ratios and the load average. The clients run in this
process: on a small machine they take a share of the CPU too.

    .venv/bin/python bench/load.py [--talking 12] [--idle 50] [--duration 60] [--workers 2]
"""

import argparse
import asyncio
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from listening_kit import (
    HUMAN_AUDIO,
    Clip,
    load_clips,
    percentile,
    process_tree_cpu_secs,
    process_tree_pss_mib,
    speech_span,
)

from pipelines.audio import read_wav
from transports import client_messages as cm
from transports.clients.talk import FRAME_SECS, Talker

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "configs" / "assistant.yaml"
QUESTIONS = ["what is the weather like today", "tell me a joke", "what time is it", "hello"]
ANSWER_TIMEOUT_S = 8.0
QUIET_AFTER_ANSWER_S = 0.6
SILENCE = bytes(int(16000 * FRAME_SECS) * 2)


@dataclass
class Figures:
    """What one target did under the load."""

    name: str
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    held: int = 0
    #: Turns the bot answered before the user's speech ended (a pause inside a clip): no latency counted.
    premature: int = 0
    idle_held: int = 0
    cpu_cores: float = 0.0
    #: CPU of the server's main process alone (the front, with workers), and of this process's clients.
    main_cores: float = 0.0
    client_cores: float = 0.0
    pss_mib: float = 0.0
    base_pss_mib: float = 0.0

    def p(self, q: float) -> float:
        return percentile(self.latencies, q) if self.latencies else float("nan")


# -- the plain pipecat server ------------------------------------------------------


def plain_server(config: Path, port: int) -> None:
    """Serves ``config``'s processors with pipecat's own WebSocket transport, one worker per socket."""
    from dataclasses import replace

    import uvicorn
    from fastapi import FastAPI, WebSocket
    from pipecat.serializers.protobuf import ProtobufFrameSerializer
    from pipecat.transports.websocket.fastapi import (
        FastAPIWebsocketParams,
        FastAPIWebsocketTransport,
    )

    from pipelines.builder import build_agent
    from pipelines.runner import run_worker
    from pipelines.server.app import served_on
    from pipelines.validate import load_agent

    agent = served_on(load_agent(config), "websocket")

    def transport(params, ctx):
        return FastAPIWebsocketTransport(ctx.peer, FastAPIWebsocketParams(
            audio_in_enabled=True, audio_out_enabled=True, audio_in_sample_rate=params.audio_in_sample_rate,
            audio_out_sample_rate=params.audio_out_sample_rate, serializer=ProtobufFrameSerializer()))

    agent = replace(agent, transport=replace(agent.transport, type=replace(agent.transport.type, factory=transport)))
    app = FastAPI()

    @app.websocket("/ws")
    async def ws(socket: WebSocket):
        await socket.accept()
        await run_worker(build_agent(agent, peer=socket, guard_interruptions=False).worker())

    config_ = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws_max_size=1 << 20)
    server = uvicorn.Server(config_)
    sock = config_.bind_socket()
    print(f"serving plain pipecat on http://127.0.0.1:{sock.getsockname()[1]}/", flush=True)
    asyncio.run(server.serve(sockets=[sock]))


# -- targets -----------------------------------------------------------------------


async def start(command: list[str]) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.DEVNULL, cwd=ROOT)
    line = (await asyncio.wait_for(proc.stdout.readline(), 180)).decode()
    match = re.search(r"(http://[\d.]+:\d+)/", line)
    if not match:
        raise SystemExit(f"{' '.join(command)}: did not start ({line.strip()!r})")
    return proc, match.group(1)


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(2)
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def socket_url(base: str, plain: bool) -> str:
    """A new session's WebSocket: ``/ws`` of plain pipecat; ``POST /sessions`` then its socket for framegraph."""
    import httpx

    ws = base.replace("http", "ws", 1)
    if plain:
        return f"{ws}/ws"
    async with httpx.AsyncClient(timeout=30) as http:
        created = (await http.post(f"{base}/sessions")).raise_for_status().json()
    return f"{ws}/sessions/{created['id']}/ws?token={created['token']}"


# -- clients -----------------------------------------------------------------------


async def talking(base: str, plain: bool, clips: list[Clip], offset: int, until: float, figures: Figures) -> None:
    """One talking session: clip after clip until ``until``; latencies and errors go to ``figures``."""
    try:
        talker = Talker(await socket_url(base, plain))
        await talker.__aenter__()
    except Exception as e:
        figures.errors.append(f"connect: {e.__class__.__name__}: {e}"[:200])
        return
    try:
        try:
            await talker.unless_closed(talker.wait_for_message(cm.BOT_READY, 30))
        except TimeoutError:
            pass  # no RTVI ready message: speak anyway
        turn = offset
        while time.monotonic() < until and not talker.closed:
            clip = clips[turn % len(clips)]
            turn += 1
            started = time.monotonic()
            await talker.stream(clip.pcm)
            speech_end = started + clip.end
            heard = None
            deadline = time.monotonic() + ANSWER_TIMEOUT_S
            while time.monotonic() < deadline and not talker.closed:
                heard = next((t for t, _, loud in talker.playback.arrivals if loud and t > speech_end), None)
                if heard is not None:
                    break
                await talker.stream(SILENCE * 5)
            if talker.closed:
                break
            if heard is None:
                figures.errors.append(f"turn {clip.name}: no answer within {ANSWER_TIMEOUT_S:g} s")
                continue
            if any(loud and started + clip.onset < t <= speech_end for t, _, loud in talker.playback.arrivals):
                figures.premature += 1
            else:
                figures.latencies.append(heard - speech_end)
            while not talker.closed:  # an open microphone until the bot has finished
                last = talker.playback.played[-1].end if talker.playback.played else 0
                if time.monotonic() - last >= QUIET_AFTER_ANSWER_S:
                    break
                await talker.stream(SILENCE * 5)
        if talker.closed:
            figures.errors.append(f"dropped (close code {talker.close_code})")
        else:
            figures.held += 1
    finally:
        await talker.close()


async def idle(base: str, plain: bool, until: float, figures: Figures) -> None:
    """One idle session: connected, microphone muted, until ``until``."""
    try:
        talker = Talker(await socket_url(base, plain))
        await talker.__aenter__()
    except Exception as e:
        figures.errors.append(f"idle connect: {e.__class__.__name__}: {e}"[:200])
        return
    try:
        while time.monotonic() < until and not talker.closed:
            await asyncio.sleep(0.5)
        if talker.closed:
            figures.errors.append(f"idle dropped (close code {talker.close_code})")
        else:
            figures.idle_held += 1
    finally:
        await talker.close()


async def measure(name: str, command: list[str], plain: bool, args, clips: list[Clip]) -> Figures:
    figures = Figures(name)
    proc, base = await start(command)
    try:
        await asyncio.sleep(1.0)
        figures.base_pss_mib = process_tree_pss_mib([proc.pid])
        until = time.monotonic() + args.duration
        idle_tasks = [asyncio.create_task(idle(base, plain, until + 5, figures)) for _ in range(args.idle)]
        cpu0, main0, own0, t0 = process_tree_cpu_secs([proc.pid]), cpu_secs(proc.pid), time.process_time(), time.monotonic()
        await asyncio.gather(*(talking(base, plain, clips, i * 3, until, figures) for i in range(args.talking)))
        elapsed = time.monotonic() - t0
        figures.cpu_cores = (process_tree_cpu_secs([proc.pid]) - cpu0) / elapsed
        figures.main_cores = (cpu_secs(proc.pid) - main0) / elapsed
        figures.client_cores = (time.process_time() - own0) / elapsed
        figures.pss_mib = process_tree_pss_mib([proc.pid])
        await asyncio.gather(*idle_tasks)
    finally:
        await stop(proc)
    return figures


def cpu_secs(pid: int) -> float:
    """User + system CPU seconds of one process (not its children)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load_clip_set(human: Path) -> list[Clip]:
    """Human clips when present, the bundled question, and espeak questions (16 kHz)."""
    from processors.tts.espeak import synthesize_pcm

    clips = load_clips(human) if human.is_dir() and any(human.glob("*.wav")) else []
    question = read_wav(ROOT / "configs" / "audio" / "question.wav", 16000)
    clips.append(Clip("question.wav", question, *speech_span(question)))
    for text in QUESTIONS:
        pcm = bytes(8000) + await synthesize_pcm(text) + bytes(8000)
        clips.append(Clip(f"espeak:{text}", pcm, *speech_span(pcm)))
    return clips


def report(all_figures: list[Figures], args) -> None:
    sessions = args.talking + args.idle
    print(f"\n{args.talking} talking + {args.idle} idle sessions, {args.duration:g} s, config {args.config}")
    print(f"{'target':<26}{'held':>10}{'errors':>8}{'turns':>7}{'early':>6}{'p50 ms':>8}{'p95 ms':>8}"
          f"{'cores':>7}{'main':>6}{'CPU%/sess':>10}{'MiB/sess':>9}{'clients':>8}")
    for f in all_figures:
        per_mib = (f.pss_mib - f.base_pss_mib) / max(1, sessions)
        print(f"{f.name:<26}{f'{f.held}+{f.idle_held}':>10}{len(f.errors):>8}{len(f.latencies):>7}{f.premature:>6}"
              f"{f.p(50) * 1000:>8.0f}{f.p(95) * 1000:>8.0f}{f.cpu_cores:>7.2f}{f.main_cores:>6.2f}"
              f"{100 * f.cpu_cores / max(1, args.talking):>10.1f}{per_mib:>9.1f}{f.client_cores:>8.2f}")
        for error in sorted(set(f.errors))[:5]:
            print(f"    {f.errors.count(error)} x {error}")
    one, many, plain = all_figures
    print(f"\nratios (p95): --workers {args.workers} / --workers 1 = {many.p(95) / one.p(95):.2f}; "
          f"--workers 1 / plain pipecat = {one.p(95) / plain.p(95):.2f}; "
          f"--workers {args.workers} / plain pipecat = {many.p(95) / plain.p(95):.2f}")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")


async def main(args) -> None:
    from loguru import logger

    logger.remove()
    clips = await load_clip_set(Path(args.human))
    print(f"{len(clips)} clips; load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    with tempfile.TemporaryDirectory(prefix="framegraph-load-") as tmp:
        serve = [sys.executable, "-m", "pipelines.cli", "serve", str(args.config), "--transport", "websocket",
                 "--port", "0", "--max-sessions", str(args.talking + args.idle + 10), "--grace", "5"]
        targets = [
            ("framegraph --workers 1", serve + ["--workers", "1", "--store", f"{tmp}/one.db"], False),
            (f"framegraph --workers {args.workers}", serve + ["--workers", str(args.workers), "--store", f"{tmp}/n.db"], False),
            ("plain pipecat", [sys.executable, __file__, "--plain-server", "--config", str(args.config)], True),
        ]
        results = []
        for name, command, plain in targets:
            print(f"{name}: {args.talking} talking + {args.idle} idle for {args.duration:g} s...", flush=True)
            results.append(await measure(name, command, plain, args, clips))
    report(results, args)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--talking", type=int, default=12, help="talking sessions (default 12)")
    parser.add_argument("--idle", type=int, default=50, help="idle connected sessions (default 50)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of talking (default 60)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="workers of the second target")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--human", default=str(HUMAN_AUDIO), help="folder of human clips (16-bit WAV)")
    parser.add_argument("--plain-server", action="store_true", help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    if parsed.plain_server:
        plain_server(parsed.config, 0)
    else:
        asyncio.run(main(parsed))
