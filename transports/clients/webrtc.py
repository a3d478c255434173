"""A Python WebRTC participant (aiortc) for tests, benchmarks and scripts.

It does what the web page does: offers audio and a data channel to the
server's ``/api/offer``, pings every second, sends microphone audio (here:
PCM it is given, silence otherwise), and plays the bot. Like the page, it
obeys ``bot-interrupted``: bot audio is dropped until the next
``bot-started-speaking``. Every 20 ms of bot audio received is recorded with
its arrival time and whether it was played, which is what the loopback tests
and ``bench/transport_latency.py`` measure. With ``video=True`` it also asks
for the agent's video track (the avatar's face) and keeps every decoded frame
with its arrival time (``seen``); with ``keep_audio=True`` the bot's audio
too (``audio``), to line it up with what the agent sent.
"""

import asyncio
import fractions
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame

from pipelines.audio import USER_SAMPLE_RATE
from pipelines.client_protocol import messages as cm

MIC_RATE = USER_SAMPLE_RATE
MIC_FRAME_SECS = 0.02


@dataclass
class Heard:
    """One decoded frame of bot audio."""

    time: float  # time.monotonic() of arrival
    secs: float  # duration
    rms: float
    played: bool  # False when dropped after bot-interrupted


class Microphone(MediaStreamTrack):
    """An audio track that sends queued 16 kHz PCM in real time, silence otherwise."""

    kind = "audio"

    def __init__(self):
        super().__init__()
        self._pending = bytearray()
        self._samples = int(MIC_RATE * MIC_FRAME_SECS)
        self._pts = 0
        self._start: float | None = None

    def say(self, pcm: bytes) -> float:
        """Queues 16-bit mono 16 kHz ``pcm``; returns seconds until it has all been sent."""
        self._pending.extend(pcm)
        return len(self._pending) / 2 / MIC_RATE

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        wait = self._start + self._pts / MIC_RATE - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        size = self._samples * 2
        chunk = bytes(self._pending[:size]).ljust(size, b"\0")
        del self._pending[:size]
        frame = AudioFrame.from_ndarray(np.frombuffer(chunk, dtype=np.int16)[None, :], layout="mono")
        frame.sample_rate = MIC_RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, MIC_RATE)
        self._pts += self._samples
        return frame


@dataclass
class Seen:
    """One decoded frame of the agent's video."""

    time: float  # time.monotonic() of arrival
    image: np.ndarray  # height x width x 3, RGB


class WebRTCPeer:
    """One participant: connect, speak, listen (and watch), close (or vanish)."""

    def __init__(self, *, obey_interruptions: bool = True, loud_rms: float = 300.0, video: bool = False,
                 keep_audio: bool = False):
        self.pc = RTCPeerConnection()
        self.mic = Microphone()
        self.heard: list[Heard] = []
        self.seen: list[Seen] = []
        #: With ``keep_audio``: each bot audio frame's arrival time and first channel (int16), at ``audio_rate``.
        self.audio: list[tuple[float, np.ndarray]] | None = [] if keep_audio else None
        self.audio_rate = 0
        self.messages: list[tuple[float, dict]] = []
        self.obey_interruptions = obey_interruptions
        self.loud_rms = loud_rms
        self.muted = False
        self._tasks: list[asyncio.Task] = []
        self._channel = self.pc.createDataChannel("chat", ordered=True)
        self._channel.on("message", self._on_message)
        self.pc.addTransceiver(self.mic, direction="sendrecv")
        if video:
            self.pc.addTransceiver("video", direction="recvonly")
        self.pc.on("track", self._on_track)

    async def connect(self, url: str, *, resume: str | None = None) -> None:
        """Offers to ``url`` (the server's base URL) and waits until the data channel opens.

        ``resume``: the ``pc_id`` of a session this peer (or one it replaces)
        had, to carry on that session on a new connection.
        """

        async def post(offer: dict) -> dict:
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{url.rstrip('/')}/api/offer", json=offer) as response:
                    response.raise_for_status()
                    return await response.json()

        await self.connect_with(post, resume=resume)

    async def connect_with(self, signal: Callable[[dict], Awaitable[dict]], *, resume: str | None = None) -> None:
        """Connects through ``signal`` (offer dict -> answer dict)."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        offer = {"sdp": self.pc.localDescription.sdp, "type": "offer"}
        if resume:
            offer |= {"pc_id": resume, "restart_pc": True}
        answer = await signal(offer)
        self.pc_id = answer["pc_id"]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        opened = asyncio.Event()
        if self._channel.readyState == "open":
            opened.set()
        self._channel.on("open", opened.set)
        await asyncio.wait_for(opened.wait(), 20)
        self._tasks.append(asyncio.create_task(self._ping()))
        if not resume:
            self.send(cm.client_ready())
            self.send(cm.ask_for_poses())

    def say(self, pcm: bytes) -> float:
        """Sends 16 kHz mono ``pcm`` as microphone audio; returns seconds it takes."""
        return self.mic.say(pcm)

    def send(self, msg) -> None:
        """Sends a data-channel message (a dict as JSON, a str as is)."""
        self._channel.send(msg if isinstance(msg, str) else json.dumps(msg))

    def stale_audio(self, interrupted_at: float, *, until: float | None = None, played_only: bool = True) -> float:
        """Seconds of loud bot audio that came after an interruption at monotonic ``interrupted_at``.

        Counted until ``until`` (when the bot began its next answer), or else
        until its next ``bot-started-speaking`` message. ``played_only=False``
        counts what arrived, dropped or not.
        """
        end = until or cm.first_after(self.messages, cm.BOT_STARTED_SPEAKING, interrupted_at)
        return sum(
            h.secs
            for h in self.heard
            if interrupted_at < h.time < end and h.rms >= self.loud_rms and (h.played or not played_only)
        )

    def first_loud_after(self, t: float) -> Heard | None:
        """The first loud bot frame that arrived after ``t``."""
        return next((h for h in self.heard if h.time > t and h.rms >= self.loud_rms), None)

    async def wait_for_message(self, kind: str, timeout: float, after: float = 0.0) -> dict:
        """The first message of RTVI type ``kind`` received after ``after``."""
        return await cm.wait_for(self.messages, kind, timeout, after)

    async def wait_for_loud(self, timeout: float, after: float = 0.0) -> Heard:
        """The first loud bot frame after ``after``, waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            heard = self.first_loud_after(after)
            if heard:
                return heard
            await asyncio.sleep(0.01)
        raise TimeoutError(f"no bot audio within {timeout} s ({len(self.heard)} quiet frames heard)")

    async def close(self) -> None:
        """Leaves cleanly: the server sees the connection close."""
        self._cancel_tasks()
        await self.pc.close()

    def vanish(self) -> None:
        """Disappears without a word, as a crashed or unplugged peer does.

        Pings stop and the peer's UDP sockets are closed without sending
        anything, so the server hears nothing more.
        """
        self._cancel_tasks()
        for transceiver in self.pc.getTransceivers():
            ice = transceiver.receiver.transport.transport
            for protocol in ice.iceGatherer._connection._protocols:
                protocol.transport.close()

    def _cancel_tasks(self):
        for task in self._tasks:
            task.cancel()

    async def _ping(self):
        while self._channel.readyState == "open":
            self._channel.send(f"ping: {time.time()}")
            await asyncio.sleep(1.0)

    def _on_message(self, raw):
        try:
            msg = json.loads(raw)
        except ValueError:
            return
        self.messages.append((time.monotonic(), msg))
        kind = cm.kind_of(msg)
        if kind == cm.BOT_INTERRUPTED and self.obey_interruptions:
            self.muted = True
        elif kind == cm.BOT_STARTED_SPEAKING:
            self.muted = False

    def _on_track(self, track):
        if track.kind == "audio":
            self._tasks.append(asyncio.create_task(self._listen(track)))
        elif track.kind == "video":
            self._tasks.append(asyncio.create_task(self._watch(track)))

    async def _watch(self, track):
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            self.seen.append(Seen(time.monotonic(), frame.to_ndarray(format="rgb24")))

    async def _listen(self, track):
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            samples = frame.to_ndarray().astype(np.float64)
            if self.audio is not None:
                self.audio_rate = frame.sample_rate
                channels = len(frame.layout.channels)
                self.audio.append((time.monotonic(), samples.reshape(-1)[::channels].astype(np.int16)))
            level = float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0
            self.heard.append(Heard(time.monotonic(), frame.samples / frame.sample_rate, level, not self.muted))

