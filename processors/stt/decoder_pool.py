"""Agent side of the decoder processes: one shared host per model, one stream per agent.

``decoder_host(config)`` starts (once per configuration, per server process)
the host process of :mod:`processors.stt.decoder_host`, which loads the model
once; ``DecoderHost.open_stream`` connects an agent to a forked decoder of its
own. Nothing here blocks the event loop: the socket is asyncio's, audio is
written without waiting, and results come back as events.
"""

import asyncio
import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from processors.stt import protocol

PROJECT_ROOT = Path(__file__).resolve().parents[2]
HOST_START_TIMEOUT_SECS = 60.0
BATCH_SECS_IDLE = 0.1
BATCH_SECS_SPEAKING = 0.04


class DecoderError(RuntimeError):
    """The decoder process refused a configuration or went away."""


@dataclass(frozen=True)
class Search:
    """How a stream searches: the STT's ``max_hmm_per_frame``, ``accurate`` and ``out_of_domain_search``.

    A stream may switch between the searches its host loaded (the agent's
    own and its ``backpressure.degraded`` ones) while it runs, between
    utterances: pocketsphinx fixes a language-model search's width when the
    search is made, so the host makes one per setting before it forks.
    """

    max_hmm_per_frame: int = 3000
    accurate: bool = False
    #: The beams of the out-of-domain check's pass (``OPEN_PASS_BEAMS`` in the host): ``fast`` or ``exact``.
    open_pass: str = "fast"

    @classmethod
    def of(cls, params: Any) -> "Search":
        """The search a ``PocketsphinxParams`` asks for."""
        return cls(params.max_hmm_per_frame, params.accurate, params.out_of_domain_search)


@dataclass(frozen=True)
class HostConfig:
    """What a decoder host loads; agents with equal configs share one host."""

    #: The searches its streams may use (``Search``); a stream starts with the first unless told another.
    searches: tuple[Search, ...] = (Search(),)
    #: Whether its streams decode with the language model (no grammar): it then makes a
    #: language-model search for each of ``searches``.
    language_model: bool = True
    #: Also load a language-model decoder, for streams that reject out-of-domain speech.
    domain_check: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The JSON the host process receives on its command line."""
        return {"searches": [asdict(s) for s in self.searches], "language_model": self.language_model,
                "domain_check": self.domain_check}


@dataclass
class DecoderEvent:
    """An interim or final hypothesis from the decoder."""

    final: bool
    text: str
    words: list[tuple[str, float, float]] = field(default_factory=list)
    #: A final the open-vocabulary pass found outside the grammar (``text`` is what that pass heard).
    out_of_domain: bool = False
    #: A final's settings, as the decoder used them: its ``Search`` fields and ``interim_secs``.
    settings: dict[str, Any] = field(default_factory=dict)


class DecoderStream:
    """One agent's connection to its forked decoder.

    Audio goes out in batches, not per 20 ms frame: each socket write wakes
    the decoder, and writes cost the agents' process CPU. Between utterances
    (pre-roll only) a batch is ``BATCH_SECS_IDLE``; during one it is
    ``BATCH_SECS_SPEAKING``, so that at VAD's stop little audio is left to
    decode before the final transcript. Starting or ending an utterance sends
    what is pending first.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sample_rate: int):
        self._reader = reader
        self._writer = writer
        self._bytes_per_sec = sample_rate * 2
        self._batch_bytes = int(self._bytes_per_sec * BATCH_SECS_IDLE)
        self._pending = bytearray()

    def _send(self, data: bytes) -> None:
        if not self._writer.is_closing():
            self._writer.write(data)

    def _flush_audio(self) -> None:
        if self._pending:
            self._send(protocol.encode(protocol.AUDIO, bytes(self._pending)))
            self._pending.clear()

    def send_audio(self, pcm: bytes) -> None:
        """Queue audio for the decoder (kept as pre-roll outside utterances)."""
        self._pending += pcm
        if len(self._pending) >= self._batch_bytes:
            self._flush_audio()

    def start_utterance(self) -> None:
        """Begin an utterance, the pre-roll included."""
        self._flush_audio()
        self._send(protocol.encode(protocol.START, b""))
        self._batch_bytes = int(self._bytes_per_sec * BATCH_SECS_SPEAKING)

    def retune(self, search: Search, interim_secs: float) -> None:
        """From the next utterance on, decode with ``search`` and send interim transcripts every ``interim_secs``."""
        self._send(protocol.encode_json(protocol.RETUNE, {"search": asdict(search), "interim_secs": interim_secs}))

    def end_utterance(self) -> None:
        """End the utterance; its final hypothesis comes back as an event."""
        self._flush_audio()
        self._send(protocol.encode(protocol.END, b""))
        self._batch_bytes = int(self._bytes_per_sec * BATCH_SECS_IDLE)

    async def _read(self) -> tuple[bytes, dict[str, Any]]:
        header = await self._reader.readexactly(protocol.HEADER.size)
        tag, length = protocol.HEADER.unpack(header)
        payload = await self._reader.readexactly(length) if length else b"{}"
        return tag, json.loads(payload)

    async def configure(self, config: dict[str, Any]) -> None:
        """Send the stream's CONFIG and wait for the decoder to accept it."""
        self._send(protocol.encode_json(protocol.CONFIG, config))
        tag, value = await self._read()
        if tag == protocol.ERROR:
            raise DecoderError(value["message"])

    async def next_event(self) -> DecoderEvent | None:
        """The next hypothesis, or None once the decoder has gone away."""
        try:
            tag, value = await self._read()
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        words = [(w, start, end) for w, start, end in value.get("words", [])]
        return DecoderEvent(final=tag == protocol.FINAL, text=value["text"], words=words,
                            out_of_domain=value.get("out_of_domain", False), settings=value.get("settings", {}))

    async def close(self) -> None:
        """Close the connection; the forked decoder exits."""
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except ConnectionError:
            pass


class DecoderHost:
    """The host process for one configuration, started at once, awaited lazily."""

    def __init__(self, config: HostConfig):
        self.config = config
        self._dir = tempfile.mkdtemp(prefix="framegraph-stt-")
        self._socket_path = os.path.join(self._dir, "decoder.sock")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "processors.stt.decoder_host",
                self._socket_path,
                json.dumps(config.as_dict()),
            ],
            env=env,
            stdin=subprocess.DEVNULL,
        )

    @property
    def pid(self) -> int:
        """The host process id (benchmarks sum memory over it and its children)."""
        return self._process.pid

    @property
    def alive(self) -> bool:
        """Whether the host process is still running."""
        return self._process.poll() is None

    async def open_stream(
        self, *, sample_rate: int, grammar: str | None, preroll_secs: float, interim_secs: float,
        out_of_domain_margin: float | None = None, search: Search | None = None,
    ) -> DecoderStream:
        """Connect a new agent stream, waiting for the host to finish loading if needed.

        ``search`` (one of the host's ``HostConfig.searches``; None: the first) is the one it starts with.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + HOST_START_TIMEOUT_SECS
        while True:
            try:
                reader, writer = await asyncio.open_unix_connection(self._socket_path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if not self.alive:
                    raise DecoderError(f"pocketsphinx host exited with code {self._process.returncode}") from None
                if loop.time() > deadline:
                    raise DecoderError("pocketsphinx host did not start in time") from None
                await asyncio.sleep(0.05)
        stream = DecoderStream(reader, writer, sample_rate)
        await stream.configure(
            {
                "sample_rate": sample_rate,
                "grammar": grammar,
                "preroll_secs": preroll_secs,
                "interim_secs": interim_secs,
                "out_of_domain_margin": out_of_domain_margin,
                "search": asdict(search or self.config.searches[0]),
            }
        )
        return stream

    def shutdown(self) -> None:
        """Stop the host (it removes its socket on SIGTERM); its forked decoders follow it."""
        if self.alive:
            self._process.terminate()
            try:
                self._process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        shutil.rmtree(self._dir, ignore_errors=True)


_hosts: dict[HostConfig, DecoderHost] = {}


def decoder_host(config: HostConfig) -> DecoderHost:
    """The running host for ``config``, started on first use (or again if it died)."""
    host = _hosts.get(config)
    if host is None or not host.alive:
        if host is not None:
            host.shutdown()
        host = DecoderHost(config)
        _hosts[config] = host
    return host


@atexit.register
def _shutdown_hosts() -> None:
    for host in _hosts.values():
        host.shutdown()
    _hosts.clear()
