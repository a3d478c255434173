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
the server tree's CPU (cores: all its processes) and memory (PSS) per session, and the
clients' CPU; then the ratios and the load average. The clients run in this
process: on a small machine they take a share of the CPU too.

The CPU is read every 0.25 s from /proc, per kind of process (main; the
workers; the pocketsphinx decoders, forked per session, whose CPU would
vanish with them at the session's end; other), so it counts ended
processes too. "gaps%" is the silence inside the bot's replies where the
next chunk of its voice reached the client after the previous one had
played (a dropout a listener hears), as a share of the replies' length. A
table of latencies per clip follows.

``--arrive-every 2 --arrivals 30`` is the arrival mode: talking clients keep
arriving, one every 2 s up to 30, and talk until the last has talked for
``--duration`` s, against ``serve --workers N`` (its load levels decide
admission, docs/backpressure.md; ``--max-sessions`` is set out of the way)
and plain pipecat (which admits everything), one after the other. It prints
the sessions admitted and refused (503 + Retry-After), the time to the
503, p95 speech end -> first audio and the gaps of the admitted ones, the
server's level changes (from ``/metrics``), and, once the last client left,
how long the level took to fall under SESSION_REJECT (new sessions admitted
again) and back to NORMAL (watched for ``--recovery-wait`` s).

``--sweep 6,9,12,15`` measures how many talking sessions each target holds
(no error, p95 under ``--goal-ms``, gaps under ``--max-gaps``): each target at each count in turn,
fewest first, until it misses; then the ratio of sessions held.

    .venv/bin/python bench/load.py [--talking 12] [--idle 50] [--duration 60] [--workers 2]
    .venv/bin/python bench/load.py --sweep 9,12,15,18,21 --idle 50 --duration 40
    .venv/bin/python bench/load.py --sweep 3,6,9,12 --tts piper_tts    # the agent speaking with Piper
    .venv/bin/python bench/load.py --arrive-every 2 --arrivals 30 --duration 20 --idle 0 --workers 2
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
    TreeCpu,
    load_clips,
    percentile,
    process_tree_pss_mib,
    speech_span,
)

from pipelines.audio import read_wav
from pipelines.client_protocol import messages as cm
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
    by_clip: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    held: int = 0
    #: Turns the bot answered before the user's speech ended (a pause inside a clip): no latency counted.
    premature: int = 0
    idle_held: int = 0
    #: Bot audio the clients played in replies, and the silence inside those replies where the
    #: next chunk came late (a gap a listener hears as a dropout).
    reply_secs: float = 0.0
    gap_secs: float = 0.0
    #: Cores used by the server tree per kind of process: main (the server, or the front with
    #: workers), workers, decoders (the pocketsphinx host and its forked decoders), other.
    cores: dict[str, float] = field(default_factory=dict)
    #: CPU of this process's clients.
    client_cores: float = 0.0
    pss_mib: float = 0.0
    base_pss_mib: float = 0.0
    #: Arrival mode: sessions admitted, and the seconds each refused one waited for its 503.
    admitted: int = 0
    refused: list[float] = field(default_factory=list)
    #: Arrival mode: the server's load level changes, by the level entered (from /metrics).
    level_changes: dict[str, float] = field(default_factory=dict)
    #: Arrival mode: (seconds from the start, live sessions, /health's load report) every 2 s.
    timeline: list[tuple[float, int, dict]] = field(default_factory=list)
    #: After the last client left: seconds until the level was under SESSION_REJECT, and until NORMAL (None: not seen).
    recovery: dict[str, float | None] = field(default_factory=dict)

    def p(self, q: float) -> float:
        return percentile(self.latencies, q) if self.latencies else float("nan")


# -- the plain pipecat server ------------------------------------------------------


def tts_sets(tts: str | None) -> list[str]:
    """The ``--set`` overrides that make the served agent speak with ``tts`` (none: the config's own TTS)."""
    return [f"processors.tts={{type: {tts}}}"] if tts else []


def plain_server(config: Path, port: int, tts: str | None = None) -> None:
    """Serves ``config``'s processors (speaking with ``tts``) with pipecat's own WebSocket transport, one worker per socket."""
    from dataclasses import replace

    import uvicorn
    from fastapi import FastAPI, WebSocket
    from pipecat.serializers.protobuf import ProtobufFrameSerializer
    from pipecat.transports.websocket.fastapi import (
        FastAPIWebsocketParams,
        FastAPIWebsocketTransport,
    )

    from pipelines.builder import build_agent
    from pipelines.client_protocol.rtvi import for_client
    from pipelines.overrides import load_agent_with
    from pipelines.runner import run_worker
    from pipelines.server.app import served_on

    agent = served_on(load_agent_with(config, tts_sets(tts)), "websocket")

    def transport(params, ctx):
        return FastAPIWebsocketTransport(ctx.peer, FastAPIWebsocketParams(
            audio_in_enabled=True, audio_out_enabled=True, audio_in_sample_rate=params.audio_in_sample_rate,
            audio_out_sample_rate=params.audio_out_sample_rate, serializer=ProtobufFrameSerializer()))

    agent = replace(agent, transport=replace(agent.transport, type=replace(agent.transport.type, factory=transport)))
    app = FastAPI()

    @app.websocket("/ws")
    async def ws(socket: WebSocket):
        await socket.accept()
        await run_worker(build_agent(agent, peer=socket, guard_interruptions=False,
                                      additions=(for_client,)).worker())

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

    if plain:
        return f"{base.replace('http', 'ws', 1)}/ws"
    async with httpx.AsyncClient(timeout=30) as http:
        created = (await http.post(f"{base}/sessions")).raise_for_status().json()
    return session_socket_url(base, created)


def session_socket_url(base: str, created: dict) -> str:
    """The WebSocket of the session ``POST /sessions`` on ``base`` answered ``created`` (its id and token)."""
    return f"{base.replace('http', 'ws', 1)}/sessions/{created['id']}/ws?token={created['token']}"


# -- clients -----------------------------------------------------------------------


async def connected(base: str, plain: bool, figures: Figures, what: str, url: str | None = None) -> Talker | None:
    """A new session's client (of ``url`` when given), connected; None (the error noted in ``figures``) when it could not be."""
    try:
        talker = Talker(url or await socket_url(base, plain))
        await talker.__aenter__()
    except Exception as e:
        figures.errors.append(f"{what}: {e.__class__.__name__}: {e}"[:200])
        return None
    return talker


async def talking(base: str, plain: bool, clips: list[Clip], offset: int, until: float, figures: Figures,
                  url: str | None = None) -> None:
    """One talking session: clip after clip until ``until``; latencies and errors go to ``figures``."""
    if (talker := await connected(base, plain, figures, "connect", url)) is None:
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
                figures.by_clip.setdefault(clip.name, []).append(heard - speech_end)
            while not talker.closed:  # an open microphone until the bot has finished
                last = talker.playback.played[-1].end if talker.playback.played else 0
                if time.monotonic() - last >= QUIET_AFTER_ANSWER_S:
                    break
                await talker.stream(SILENCE * 5)
            reply = [p for p in talker.playback.played if p.start >= heard - 0.05]
            figures.reply_secs += sum(p.end - p.start for p in reply)
            figures.gap_secs += sum(max(0.0, b.start - a.end) for a, b in zip(reply, reply[1:], strict=False))
        if talker.closed:
            figures.errors.append(f"dropped (close code {talker.close_code})")
        else:
            figures.held += 1
    finally:
        await talker.close()


async def idle(base: str, plain: bool, until: float, figures: Figures) -> None:
    """One idle session: connected, microphone muted, until ``until``."""
    if (talker := await connected(base, plain, figures, "idle connect")) is None:
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
        cpu, own0, t0 = TreeCpu([proc.pid]), time.process_time(), time.monotonic()
        sampling = asyncio.create_task(sample_every(cpu, 0.25))
        try:
            await asyncio.gather(*(talking(base, plain, clips, i * 3, until, figures) for i in range(args.talking)))
        finally:
            sampling.cancel()
        cpu.sample()
        elapsed = time.monotonic() - t0
        figures.cores = {kind: secs / elapsed for kind, secs in cpu.by_kind().items()}
        figures.client_cores = (time.process_time() - own0) / elapsed
        figures.pss_mib = process_tree_pss_mib([proc.pid])
        await asyncio.gather(*idle_tasks)
    finally:
        await stop(proc)
    return figures


async def arriving(base: str, plain: bool, clips: list[Clip], index: int, args, until: float, figures: Figures) -> None:
    """The ``index``-th arrival: asks for a session at its time; refused (503) or admitted and talking until ``until``."""
    import httpx

    await asyncio.sleep(index * args.arrive_every)
    url = None
    if not plain:
        asked = time.monotonic()
        async with httpx.AsyncClient(timeout=30) as http:
            answer = await http.post(f"{base}/sessions")
        if answer.status_code == 503:
            figures.refused.append(time.monotonic() - asked)
            return
        url = session_socket_url(base, answer.raise_for_status().json())
    figures.admitted += 1
    await talking(base, plain, clips, index * 3, until, figures, url)


async def measure_arrivals(name: str, command: list[str], plain: bool, args, clips: list[Clip]) -> Figures:
    """Arrival mode against one target: ``--arrivals`` clients, one every ``--arrive-every`` s."""
    import httpx

    figures = Figures(name)
    proc, base = await start(command)
    try:
        await asyncio.sleep(1.0)
        until = time.monotonic() + (args.arrivals - 1) * args.arrive_every + args.duration
        cpu, own0, t0 = TreeCpu([proc.pid]), time.process_time(), time.monotonic()
        sampling = asyncio.create_task(sample_every(cpu, 0.25))
        watching = asyncio.create_task(watch_level(base, t0, figures)) if not plain else None
        try:
            await asyncio.gather(*(arriving(base, plain, clips, i, args, until, figures) for i in range(args.arrivals)))
        finally:
            sampling.cancel()
            if watching:
                watching.cancel()
        cpu.sample()
        elapsed = time.monotonic() - t0
        figures.cores = {kind: secs / elapsed for kind, secs in cpu.by_kind().items()}
        figures.client_cores = (time.process_time() - own0) / elapsed
        if not plain:
            figures.recovery = await recovery(base, args.recovery_wait)
            async with httpx.AsyncClient(timeout=30) as http:
                metrics = (await http.get(f"{base}/metrics")).text
            for line in metrics.splitlines():
                found = re.match(r'framegraph_load_level_changes_total\{level="(\w+)"\} ([\d.]+)', line)
                if found:
                    figures.level_changes[found[1]] = float(found[2])
    finally:
        await stop(proc)
    return figures


async def watch_level(base: str, t0: float, figures: Figures) -> None:
    """Reads ``/health`` every 2 s: live sessions and the load report (one worker's, with workers)."""
    import httpx

    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        while True:
            await asyncio.sleep(2.0)
            try:
                health = (await http.get("/health")).json()
            except httpx.HTTPError:
                continue
            figures.timeline.append((time.monotonic() - t0, health["active"], health.get("load") or {}))


async def recovery(base: str, wait_s: float) -> dict[str, float | None]:
    """Once the clients left: how long until ``/health`` shows a level under SESSION_REJECT, then NORMAL."""
    import httpx

    seen: dict[str, float | None] = {"admits": None, "normal": None}
    t0 = time.monotonic()
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        while time.monotonic() - t0 < wait_s and seen["normal"] is None:
            try:
                level = ((await http.get("/health")).json().get("load") or {}).get("level")
            except httpx.HTTPError:
                level = None
            at = round(time.monotonic() - t0, 1)
            if level not in (None, "SESSION_REJECT") and seen["admits"] is None:
                seen["admits"] = at
            if level == "NORMAL":
                seen["normal"] = at
            await asyncio.sleep(0.5)
    return seen


def report_arrivals(all_figures: list[Figures], args) -> None:
    print(f"\narrivals: {args.arrivals} talking clients, one every {args.arrive_every:g} s, each talking until "
          f"{args.duration:g} s after the last arrived; config {args.config}")
    print(f"{'target':<26}{'admitted':>9}{'refused':>8}{'to 503 ms p50/max':>19}{'errors':>7}{'turns':>6}"
          f"{'p50 ms':>8}{'p95 ms':>8}{'gaps%':>6}{'cores':>7}{'clients':>8}  level changes")
    for f in all_figures:
        to_503 = (f"{percentile(f.refused, 50) * 1000:.0f}/{max(f.refused) * 1000:.0f}" if f.refused else "-")
        changes = ", ".join(f"{k} {v:g}" for k, v in f.level_changes.items()) or "-"
        print(f"{f.name:<26}{f.admitted:>9}{len(f.refused):>8}{to_503:>19}{len(f.errors):>7}{len(f.latencies):>6}"
              f"{f.p(50) * 1000:>8.0f}{f.p(95) * 1000:>8.0f}{100 * f.gap_secs / max(1e-9, f.reply_secs):>6.1f}"
              f"{sum(f.cores.values()):>7.2f}{f.client_cores:>8.2f}  {changes}")
        for error in sorted(set(f.errors))[:5]:
            print(f"    {f.errors.count(error)} x {error}")
        if f.recovery:
            print(f"    after the last client left: under SESSION_REJECT after {f.recovery['admits']} s, "
                  f"NORMAL after {f.recovery['normal']} s (watched {args.recovery_wait:g} s)")
        for at, live, load in f.timeline[::2]:
            measured = ", ".join(f"{k} {v:g}" for k, v in load.get("measured", {}).items())
            print(f"    {at:5.0f} s: {live:>3} live, {load.get('level', '?')} ({measured})")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")


async def sample_every(cpu: TreeCpu, seconds: float) -> None:
    """Reads the server tree's CPU every ``seconds``, so decoders of ended sessions still count."""
    while True:
        await asyncio.sleep(seconds)
        cpu.sample()


async def load_clip_set(human: Path) -> list[Clip]:
    """Human clips when present, the bundled question, and espeak questions (16 kHz)."""
    from processors.tts.espeak import synthesize_pcm

    clips = load_clips(human)
    print(f"clips: {len(clips)} recorded clips from {human}" if clips else
          f"clips: no recorded clips in {human} (FRAMEGRAPH_HUMAN_AUDIO or --human names a folder of WAVs)", flush=True)
    print(f"clips: configs/audio/question.wav and {len(QUESTIONS)} questions spoken by espeak-ng", flush=True)
    question = read_wav(ROOT / "configs" / "audio" / "question.wav", 16000)
    clips.append(Clip("question.wav", question, *speech_span(question)))
    for text in QUESTIONS:
        pcm = bytes(8000) + await synthesize_pcm(text) + bytes(8000)
        clips.append(Clip(f"espeak:{text}", pcm, *speech_span(pcm)))
    return clips


def report(all_figures: list[Figures], args) -> None:
    sessions = args.talking + args.idle
    print(f"\n{args.talking} talking + {args.idle} idle sessions, {args.duration:g} s, config {args.config}"
          + (f", speaking with {args.tts}" if args.tts else ""))
    print(f"{'target':<26}{'held':>10}{'errors':>8}{'turns':>7}{'early':>6}{'p50 ms':>8}{'p95 ms':>8}"
          f"{'gaps%':>6}{'cores':>7}{'main':>6}{'workers':>8}{'decoders':>9}{'CPU%/sess':>10}{'MiB/sess':>9}{'clients':>8}")
    for f in all_figures:
        per_mib = (f.pss_mib - f.base_pss_mib) / max(1, sessions)
        cores = sum(f.cores.values())
        print(f"{f.name:<26}{f'{f.held}+{f.idle_held}':>10}{len(f.errors):>8}{len(f.latencies):>7}{f.premature:>6}"
              f"{f.p(50) * 1000:>8.0f}{f.p(95) * 1000:>8.0f}{100 * f.gap_secs / max(1e-9, f.reply_secs):>6.1f}{cores:>7.2f}{f.cores.get('main', 0):>6.2f}"
              f"{f.cores.get('workers', 0):>8.2f}{f.cores.get('decoders', 0):>9.2f}"
              f"{100 * cores / max(1, args.talking):>10.1f}{per_mib:>9.1f}{f.client_cores:>8.2f}")
        for error in sorted(set(f.errors))[:5]:
            print(f"    {f.errors.count(error)} x {error}")
    print("\nspeech end to first bot audio by clip, p50 / max ms (turns):")
    for name in sorted({n for f in all_figures for n in f.by_clip}):
        cells = [f"{percentile(f.by_clip[name], 50) * 1000:.0f} / {max(f.by_clip[name]) * 1000:.0f} "
                 f"({len(f.by_clip[name])})" if f.by_clip.get(name) else "-" for f in all_figures]
        print(f"  {name[:30]:<32}" + "".join(f"{c:>22}" for c in cells))
    one, many, plain = all_figures
    print(f"\nratios (p95): --workers {args.workers} / --workers 1 = {many.p(95) / one.p(95):.2f}; "
          f"--workers 1 / plain pipecat = {one.p(95) / plain.p(95):.2f}; "
          f"--workers {args.workers} / plain pipecat = {many.p(95) / plain.p(95):.2f}")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")


def targets(args, tmp: str, talking: int) -> list[tuple[str, list[str], bool]]:
    """(name, command, plain) of the three servers measured."""
    serve = [sys.executable, "-m", "pipelines.cli", "serve", str(args.config), "--transport", "websocket",
             "--port", "0", "--max-sessions", str(talking + args.idle + 10), "--grace", "5",
             *(f"--set={s}" for s in tts_sets(args.tts))]
    return [
        ("framegraph --workers 1", serve + ["--workers", "1", "--store", f"{tmp}/one-{talking}.db"], False),
        (f"framegraph --workers {args.workers}",
         serve + ["--workers", str(args.workers), "--store", f"{tmp}/n-{talking}.db"], False),
        ("plain pipecat", [sys.executable, __file__, "--plain-server", "--config", str(args.config),
                           *(["--tts", args.tts] if args.tts else [])], True),
    ]


def holds(figures: Figures, args) -> bool:
    """Whether a target held its load: every session to the end, no error, p95 under the goal, a voice without dropouts."""
    return (not figures.errors and figures.p(95) * 1000 < args.goal_ms
            and 100 * figures.gap_secs / max(1e-9, figures.reply_secs) < args.max_gaps)


async def sweep(args, clips: list[Clip], tmp: str) -> None:
    """Each target at ``--sweep`` talking sessions, fewest first, until one misses; prints what each holds."""
    levels = sorted(int(n) for n in args.sweep.split(","))
    held: dict[str, int] = {}
    for index, (name, _, _) in enumerate(targets(args, tmp, 0)):
        held[name] = 0
        for talking in levels:
            _, command, plain = targets(args, tmp, talking)[index]
            figures = await measure(name, command, plain, replace_talking(args, talking), clips)
            ok = holds(figures, args)
            print(f"{name:<26} {talking:>3} talking + {args.idle} idle: {len(figures.errors)} errors, "
                  f"{len(figures.latencies)} turns, p50/p95 {figures.p(50) * 1000:.0f}/{figures.p(95) * 1000:.0f} ms, "
                  f"gaps {100 * figures.gap_secs / max(1e-9, figures.reply_secs):.1f}%, "
                  f"cores {sum(figures.cores.values()):.2f} -> {'holds' if ok else 'misses'}", flush=True)
            if not ok:
                break
            held[name] = talking
    one, many, plain = held.values()
    print(f"\ntalking sessions held at p95 < {args.goal_ms:g} ms, gaps < {args.max_gaps:g}%, no error (levels {args.sweep}, "
          f"{args.duration:g} s each{', ' + args.tts if args.tts else ''}): " + ", ".join(f"{name} {n}" for name, n in held.items()))
    print(f"ratio (sessions held): --workers {args.workers} / --workers 1 = {many / max(1, one):.2f}; "
          f"--workers 1 / plain pipecat = {one / max(1, plain):.2f}")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")


def replace_talking(args, talking: int):
    copy = argparse.Namespace(**vars(args))
    copy.talking = talking
    return copy


async def main(args) -> None:
    from loguru import logger

    logger.remove()
    clips = await load_clip_set(Path(args.human))
    print(f"{len(clips)} clips; load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    with tempfile.TemporaryDirectory(prefix="framegraph-load-") as tmp:
        if args.sweep:
            await sweep(args, clips, tmp)
            return
        if args.arrivals:
            chosen = targets(replace_talking(args, args.arrivals), tmp, args.arrivals)[1:]
            results = []
            for name, command, plain in chosen:
                print(f"{name}: {args.arrivals} arrivals, one every {args.arrive_every:g} s...", flush=True)
                results.append(await measure_arrivals(name, command, plain, args, clips))
            report_arrivals(results, args)
            return
        results = []
        for name, command, plain in targets(args, tmp, args.talking):
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
    parser.add_argument("--tts", choices=["espeak_tts", "piper_tts"],
                        help="the TTS every target's agent speaks with (default: the config's own)")
    parser.add_argument("--human", default=str(HUMAN_AUDIO), help="folder of human clips (16-bit WAV)")
    parser.add_argument("--sweep", help="comma-separated talking-session counts: find how many each target holds")
    parser.add_argument("--goal-ms", type=float, default=1000.0, help="--sweep: p95 a target must stay under")
    parser.add_argument("--max-gaps", type=float, default=5.0,
                        help="--sweep: share of the replies (%%) that may be gaps in the bot's voice")
    parser.add_argument("--arrivals", type=int, default=0, help="arrival mode: this many talking clients arrive")
    parser.add_argument("--recovery-wait", type=float, default=60.0,
                        help="arrival mode: seconds to watch the level recover after the last client left")
    parser.add_argument("--arrive-every", type=float, default=2.0, help="arrival mode: seconds between two arrivals")
    parser.add_argument("--plain-server", action="store_true", help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    if parsed.plain_server:
        plain_server(parsed.config, 0, parsed.tts)
    else:
        asyncio.run(main(parsed))
