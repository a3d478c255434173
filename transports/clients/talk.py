"""``framegraph talk URL --input in.wav --output reply.wav``: a WebSocket participant.

Streams a WAV to a ``websocket`` agent in real time (pipecat protobuf frames),
prints the live transcript, and writes the bot's reply as it would have been
heard. Like the web page it obeys interruptions: audio buffered when the bot
is interrupted is dropped, not played. ``Talker`` is the same client for
tests and ``bench/transport_latency.py``.

A session's connection (``/sessions/{id}/ws?token=...``) that drops comes
back by itself (``Reconnect``): with the session's id and resume token, after
1, 2, 4 ... 30 s, giving up after 10 tries in a row (the count starts again
after a connection that held 10 s). The server's deliberate
closes are final (1000: it ended the session or the connection; 1008: the
token is refused); a lost connection (1006), a restarting server (1012) or a
full one (1013) is retried. A resumed session's server says what it restored
with an RTVI ``server-message`` ``{"type": "session-restored", "session_id",
"turns"}``. ``framegraph talk http://HOST:PORT`` creates the session itself
(``POST /sessions``), so it can resume; a plain ``/ws`` URL makes a new
session per connection and is not reconnected.
"""

import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from pipelines.audio import USER_SAMPLE_RATE, WavError, read_wav, write_wav
from pipelines.client_protocol import messages as cm

FRAME_SECS = 0.02
#: Close codes after which a client does not come back: the server ended it on purpose, or refused it.
FINAL_CLOSE_CODES = {1000, 1008, 1009}
#: Handshake answers after which a client does not come back: the session is gone or the token wrong.
FINAL_HANDSHAKE_STATUSES = {401, 403, 404}

T = TypeVar("T")


@dataclass
class Played:
    """A stretch of bot audio the client played, on its monotonic clock."""

    start: float
    end: float
    loud: bool
    arrived: float


@dataclass
class Playback:
    """What a client with a real-time speaker would play of the audio it receives.

    The server sends audio ahead of real time; it waits here, and on an
    interruption everything not yet played is dropped.
    """

    loud_rms: float = 300.0
    played: list[Played] = field(default_factory=list)
    #: Every received frame as (arrival time, seconds, loud), dropped or not.
    arrivals: list[tuple[float, float, bool]] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    _until: float = 0.0

    def add(self, pcm: bytes, sample_rate: int, now: float) -> None:
        start = max(now, self._until)
        self._until = start + len(pcm) / 2 / sample_rate
        samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float64)
        loud = samples.size > 0 and float(np.sqrt(np.mean(samples**2))) >= self.loud_rms
        self.played.append(Played(start, self._until, loud, now))
        self.arrivals.append((now, self._until - start, loud))
        self.audio.extend(pcm)

    def drop(self, now: float, sample_rate: int) -> None:
        """Stops playing at ``now``: what was queued after it is never heard."""
        kept = [p for p in self.played if p.start < now]
        unplayed = sum(p.end - p.start for p in self.played[len(kept) :])
        if kept and kept[-1].end > now:
            unplayed += kept[-1].end - now
            kept[-1] = Played(kept[-1].start, now, kept[-1].loud, kept[-1].arrived)
        if unplayed > 0:
            del self.audio[max(0, len(self.audio) - int(unplayed * sample_rate) * 2) :]
        self.played = kept
        self._until = min(self._until, now)

    def loud_between(self, t0: float, t1: float) -> float:
        """Seconds of loud audio played between ``t0`` and ``t1``."""
        return sum(max(0.0, min(p.end, t1) - max(p.start, t0)) for p in self.played if p.loud)


@dataclass(frozen=True)
class Reconnect:
    """How a dropped session comes back: waits of ``first_s`` doubling up to ``max_s``, at most ``attempts`` tries in a row.

    The count starts again only after a connection that held ``stable_s``:
    a server that accepts and drops at once is not retried for ever.
    """

    first_s: float = 1.0
    max_s: float = 30.0
    attempts: int = 10
    stable_s: float = 10.0

    def delays(self) -> list[float]:
        """The wait before each try: 1, 2, 4, 8, 16, 30, 30 ... seconds by default."""
        return [min(self.first_s * 2**i, self.max_s) for i in range(self.attempts)]


class Talker:
    """One WebSocket participant: send audio, hear the bot, read its messages; with ``reconnect``, come back after a drop."""

    def __init__(self, url: str, *, sample_rate: int = USER_SAMPLE_RATE, obey_interruptions: bool = True,
                 echo: bool = False, reconnect: Reconnect | None = None, headers: dict[str, str] | None = None):
        self.url = url
        #: Sent with the handshake (e.g. the load balancer's affinity cookie).
        self.headers = headers
        self.echo = echo
        self.reconnect = reconnect
        #: When each reconnection succeeded (monotonic), and each try's wait before it.
        self.reconnects: list[float] = []
        self.waits: list[float] = []
        #: Why the client stopped coming back (None while it connects or is connected).
        self.gave_up: str | None = None
        self._tries = 0
        self._connected_at = 0.0
        self._closing = False
        self.sample_rate = sample_rate
        self.obey_interruptions = obey_interruptions
        self.out_rate = 0
        self.playback = Playback()
        self.messages: list[tuple[float, dict]] = []
        self.interruptions: list[float] = []
        self.first_audio_at: float | None = None
        self._ws = None
        self._reader: asyncio.Task | None = None

    async def __aenter__(self) -> "Talker":
        import websockets

        self._ws = await websockets.connect(self.url, max_size=None, additional_headers=self.headers)
        self._connected_at = time.monotonic()
        self._reader = asyncio.create_task(self._read())
        try:
            await self.send_message(cm.client_ready())
            await self.send_message(cm.ask_for_poses())
        except websockets.ConnectionClosed:
            pass  # refused at once (the agent is full): ``close_code`` says why
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes cleanly (code 1000): the server ends the agent's worker."""
        self._closing = True
        if self._ws is not None:
            await self._ws.close()
        if self._reader:
            await asyncio.gather(self._reader, return_exceptions=True)

    @property
    def closed(self) -> bool:
        """Whether the connection has closed (the server went away or ended the session)."""
        return self._reader is not None and self._reader.done()

    @property
    def close_code(self) -> int | None:
        """The WebSocket close code once the connection closed (1013: the agent is full)."""
        return self._ws.close_code if self._ws is not None else None

    async def send_raw(self, data: bytes | str) -> None:
        """Sends bytes as they are (tests use it for bad messages)."""
        await self._send(data)

    async def send_message(self, msg: dict) -> None:
        """Sends an RTVI client message (a protobuf message frame)."""
        await self._send(message_frame(msg))

    async def stream(self, pcm: bytes) -> None:
        """Sends 16-bit mono ``pcm`` at ``sample_rate`` in real time, 20 ms a frame (lost while reconnecting, as a live microphone's)."""
        step = int(self.sample_rate * FRAME_SECS) * 2
        start = time.monotonic()
        for n, i in enumerate(range(0, len(pcm), step)):
            await self._send(audio_message(pcm[i : i + step], self.sample_rate))
            await asyncio.sleep(max(0.0, start + (n + 1) * FRAME_SECS - time.monotonic()))

    async def _send(self, data: bytes | str) -> None:
        """Sends on the current connection; while one is being re-established, what is sent is lost."""
        import websockets

        try:
            await self._ws.send(data)
        except websockets.ConnectionClosed:
            if self.reconnect is None or self.closed:
                raise

    async def stream_silence(self) -> None:
        """Sends silence in real time until cancelled, as an open microphone in a quiet room does."""
        frame = bytes(int(self.sample_rate * FRAME_SECS) * 2)
        while True:
            await self.stream(frame * 50)

    async def wait_for_message(self, kind: str, timeout: float, after: float = 0.0) -> dict:
        """The first RTVI message of type ``kind`` received after ``after``."""
        return await cm.wait_for(self.messages, kind, timeout, after)

    async def unless_closed(self, awaitable: Awaitable[T]) -> T:
        """Awaits ``awaitable``, unless the connection closes first.

        Raises:
            ConnectionError: The agent closed the connection (its code named).
        """
        waiting = asyncio.ensure_future(awaitable)
        await asyncio.wait({waiting, self._reader}, return_when=asyncio.FIRST_COMPLETED)
        if not waiting.done():
            waiting.cancel()
            raise ConnectionError(f"the agent closed the connection (code {self.close_code})")
        return waiting.result()

    async def wait_until_quiet(self, quiet_secs: float, timeout: float) -> None:
        """Waits until the bot has said nothing for ``quiet_secs`` after speaking (or ``timeout``, or the connection closed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.closed:
            last = self.playback.played[-1].end if self.playback.played else None
            if last is not None and time.monotonic() - last >= quiet_secs:
                return
            await asyncio.sleep(0.05)

    def stale_audio(self, interrupted_at: float, until: float | None = None) -> float:
        """Seconds of loud bot audio played after an interruption, until ``until`` or the bot's next answer."""

        end = until or cm.first_after(self.messages, cm.BOT_STARTED_SPEAKING, interrupted_at)
        return self.playback.loud_between(interrupted_at, end)

    async def _read(self) -> None:
        import websockets

        while True:
            try:
                async for data in self._ws:
                    self._handle(data, time.monotonic())
            except websockets.ConnectionClosed:
                pass
            if self._closing or self.reconnect is None:
                return
            if self._ws.close_code in FINAL_CLOSE_CODES:
                self.gave_up = f"the server closed the session's connection (code {self._ws.close_code})"
                return
            if time.monotonic() - self._connected_at >= self.reconnect.stable_s:
                self._tries = 0  # it held: the next drop gets the whole backoff again
            if not await self._come_back():
                return

    async def _come_back(self) -> bool:
        """Reconnects with the session's id and token, backing off; False once it gives up (``gave_up`` says why)."""
        import websockets

        delays = self.reconnect.delays()
        while self._tries < len(delays):
            wait = delays[self._tries]
            self._tries += 1
            self.waits.append(wait)
            await asyncio.sleep(wait)
            try:
                self._ws = await websockets.connect(self.url, max_size=None)
            except websockets.InvalidStatus as e:
                if e.response.status_code in FINAL_HANDSHAKE_STATUSES:
                    self.gave_up = f"the server refused to resume the session (HTTP {e.response.status_code})"
                    return False
                continue
            except (OSError, TimeoutError, websockets.WebSocketException):
                continue
            self.reconnects.append(time.monotonic())
            self._connected_at = self.reconnects[-1]
            try:
                await self._ws.send(message_frame(cm.client_ready()))
            except websockets.ConnectionClosed:
                pass  # refused at once (full: 1013); the read loop tries again
            return True
        self.gave_up = f"gave up resuming the session after {len(delays)} tries"
        return False

    def _handle(self, data: bytes, now: float) -> None:
        from pipecat.frames.protobufs import frames_pb2


        frame = frames_pb2.Frame.FromString(data)
        which = frame.WhichOneof("frame")
        if which == "audio":
            self.out_rate = frame.audio.sample_rate
            self.first_audio_at = self.first_audio_at or now
            self.playback.add(frame.audio.audio, frame.audio.sample_rate, now)
        elif which == "message":
            msg = json.loads(frame.message.data)
            self.messages.append((now, msg))
            if self.echo:
                _print_transcript(msg)
            if cm.kind_of(msg) == cm.BOT_INTERRUPTED:
                self._interrupted(now)
        elif which == "interruption":
            self._interrupted(now)

    def _interrupted(self, now: float) -> None:
        self.interruptions.append(now)
        if self.obey_interruptions and self.out_rate:
            self.playback.drop(now, self.out_rate)


def audio_message(pcm: bytes, sample_rate: int) -> bytes:
    """One protobuf audio frame, as pipecat's serializer reads it."""
    from pipecat.frames.protobufs import frames_pb2

    frame = frames_pb2.Frame()
    frame.audio.audio = pcm
    frame.audio.sample_rate = sample_rate
    frame.audio.num_channels = 1
    return frame.SerializeToString()


def message_frame(msg: dict) -> bytes:
    """One protobuf message frame carrying ``msg`` as JSON, as pipecat's serializer reads it."""
    from pipecat.frames.protobufs import frames_pb2

    frame = frames_pb2.Frame()
    frame.message.data = json.dumps(msg)
    return frame.SerializeToString()


def _print_transcript(msg: dict) -> None:

    kind, data = cm.kind_of(msg), msg.get("data") or {}
    if kind == cm.USER_INPUT and data.get("final"):
        print(f"you: {data.get('text', '')}", flush=True)
    elif kind == cm.BOT_TTS_TEXT:
        print(f"bot: {data.get('text', '')}", flush=True)
    elif kind == cm.SERVER_MESSAGE and data.get("type") == cm.SESSION_RESTORED:
        print(f"(session {data.get('session_id')} restored: {data.get('turns')} turns)", flush=True)


def session_url(url: str, *, agent: str | None = None, api_key: str | None = None) -> str:
    """The WebSocket URL to talk on: ``url`` itself, or for a server's ``http(s)://`` URL a new session's.

    Raises:
        OSError: The server could not be reached or refused to create a session (its answer named).
    """
    import urllib.error
    import urllib.request

    if not url.startswith(("http://", "https://")):
        return url
    base = url.rstrip("/")
    headers = {"content-type": "application/json", **({"authorization": f"Bearer {api_key}"} if api_key else {})}
    body = json.dumps({"agent": agent} if agent else {}).encode()
    request = urllib.request.Request(base + "/sessions", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            created = json.loads(answer.read())
    except urllib.error.HTTPError as e:
        raise OSError(f"POST /sessions: HTTP {e.code}: {e.read().decode(errors='replace')[:300]}") from None
    if created.get("signalling") != "socket":
        raise OSError(f"agent {created.get('agent')!r} is not served over WebSocket")
    print(f"session {created['id']}", flush=True)
    return f"{'wss' if base.startswith('https') else 'ws'}{base[base.index(':'):]}/sessions/{created['id']}/ws?token={created['token']}"


async def talk(url: str, wav_in: Path, wav_out: Path | None, *, quiet_secs: float, timeout: float,
               reconnect: Reconnect | None = None) -> int:
    """Says ``wav_in`` to the agent at ``url`` once it says ``bot-ready``; writes the reply.

    A session's URL (``/sessions/{id}/ws?token=``) is reconnected after a drop by ``reconnect``.
    """
    resumable = "/sessions/" in url and "token=" in url
    async with Talker(url, echo=True, reconnect=reconnect if resumable else None) as talker:
        await talker.unless_closed(talker.wait_for_message(cm.BOT_READY, timeout))
        await talker.stream(read_wav(wav_in, talker.sample_rate))
        microphone = asyncio.create_task(talker.stream_silence())
        await talker.wait_until_quiet(quiet_secs, timeout)
        microphone.cancel()
        await asyncio.gather(microphone, return_exceptions=True)
        if talker.closed:
            why = talker.gave_up or f"the agent closed the connection (code {talker.close_code})"
            raise ConnectionError(why)
    if not talker.playback.played:
        print(f"no reply within {timeout:g} s", file=sys.stderr)
        return 1
    if wav_out:
        write_wav(wav_out, bytes(talker.playback.audio), talker.out_rate)
        print(f"wrote {wav_out} ({len(talker.playback.audio) / 2 / talker.out_rate:.1f} s)")
    return 0


def cmd_talk(args) -> int:
    import websockets

    reconnect = Reconnect(attempts=args.reconnect_attempts) if args.reconnect_attempts > 0 else None
    try:
        url = session_url(args.url, agent=args.agent,
                          api_key=os.environ.get(args.api_key_env) if args.api_key_env else None)
        return asyncio.run(
            talk(url, Path(args.input), Path(args.output) if args.output else None,
                 quiet_secs=args.quiet, timeout=args.timeout, reconnect=reconnect)
        )
    except WavError as e:
        print(f"--input: {e}", file=sys.stderr)
        return 1
    except websockets.ConnectionClosed as e:
        print(f"talk {args.url}: the agent closed the connection ({e})", file=sys.stderr)
        return 1
    except (OSError, ValueError, TimeoutError, websockets.InvalidURI, websockets.InvalidHandshake) as e:
        print(f"talk {args.url}: {e}", file=sys.stderr)
        return 1


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "talk", help="talk to a websocket agent from a WAV", description="Stream a WAV to a websocket agent; record its reply."
    )
    p.add_argument("url", metavar="URL", help="a server (http://127.0.0.1:7860: a new session, resumed after a "
                   "drop), a session's WebSocket (ws://.../sessions/ID/ws?token=T) or an agent's (ws://.../ws)")
    p.add_argument("--agent", metavar="NAME", help="with a server URL: the agent to talk to (when it runs several)")
    p.add_argument("--api-key-env", metavar="VAR", help="with a server URL: the variable holding its API key")
    p.add_argument("--reconnect-attempts", type=int, default=10, metavar="N",
                   help="tries to resume a dropped session, waiting 1, 2, 4 ... 30 s (default 10; 0: never)")
    p.add_argument("--input", required=True, metavar="WAV", help="16-bit PCM WAV to say (any rate, mono or stereo)")
    p.add_argument("--output", metavar="WAV", help="where to write the bot's reply")
    p.add_argument("--quiet", type=float, default=2.0, help="seconds of bot silence that end the talk (default 2)")
    p.add_argument("--timeout", type=float, default=30.0, help="longest wait for the reply, seconds (default 30)")
    p.set_defaults(func=cmd_talk)
