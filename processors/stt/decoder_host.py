"""The pocketsphinx decoder process: loads the model once, forks one decoder per agent.

pocketsphinx holds the GIL while it decodes, so decoding inside the agents'
process (even in a thread executor) stalls every agent's event loop. This
host runs as its own process (``python -m processors.stt.decoder_host SOCKET
CONFIG``): it loads the acoustic model, dictionary and language model once
(about 90 MiB), then listens on a Unix socket and forks a child per
connection. Each child shares the loaded model copy-on-write (about 20-25 MiB
of its own after decoding) and serves one agent's audio stream, so the agents
decode in parallel on every core and never block each other's loops.

A child keeps the last ``preroll_secs`` of audio while nobody speaks (and
all that arrived in the last ``preroll_secs`` of wall-clock time, up to
``MAX_PREROLL_SECS``: audio the transport held while the agent started comes
in a burst, and its first words must not fall out before VAD's start
arrives) and, when
an utterance starts, decodes it from shortly before the first speech its own
small VAD finds there (so the first words survive however late the agent's
VAD event arrives on a busy machine, and leading silence costs nothing); it
decodes as audio arrives during an utterance (interim hypotheses every
``interim_secs``), and answers END with the final hypothesis and word timings
within a few tens of milliseconds, since only the tail is left to decode.

A stream may switch searches while it runs (RETUNE: the load level's
DEGRADED, docs/backpressure.md), from its next utterance on. pocketsphinx
fixes a language-model search's width and passes when the search is made
(a grammar search reads ``maxhmmpf`` every frame), so the host makes a
search for each setting its agents may use (``SearchSet``) before it
forks, and switching is ``activate_search``, microseconds; a child making
its own would spend 0.2 s of CPU when the server is already overloaded.
Either way a child that has decoded with both searches holds about 25 MiB
more of its own (decoding writes most of a search's pages).
"""

import ctypes
import json
import os
import signal
import socket
import sys
import time
import traceback
from collections import deque
from typing import Any, BinaryIO

from processors.stt import protocol
from processors.stt.out_of_domain import DomainCheck, speech_words

MODEL_SAMPLE_RATE = 16000
LEAD_IN_SECS = 0.2  # audio decoded before the first speech found in the pre-roll
MAX_PREROLL_SECS = 10.0  # the most pre-roll a burst may leave
FRAMES_PER_SEC = 100  # pocketsphinx feature frames (10 ms)
GRAMMAR_SEARCH = "grammar"
DITHER_SEED = 19


def decoder_kwargs(search: dict[str, Any]) -> dict[str, Any]:
    """pocketsphinx Decoder arguments for a search (``decoder_pool.Search`` as a dict).

    The fast settings (no fwdflat or bestpath pass, at most 3000 HMMs per
    frame) keep ``end_utt`` under ~40 ms and the real-time factor near 0.11
    with the same word error rate as the defaults on our human clips.

    Dither (half a bit of noise, from a fixed seed so verdicts repeat): a
    WebRTC microphone sends exact digital silence around speech (Chrome's
    fake microphone, Opus DTX), and frames of zeros have no log energy. On a
    fresh decoder, whose cepstral mean is still pocketsphinx's initial guess,
    the open pass read 0.7 s of zeros before "what is the weather like today"
    as "pilates unwed octogenarian", so the first question of a WebRTC session
    was rejected as out of domain (3/3); dithered, it passed
    (tests/test_out_of_domain.py::test_digital_silence_before_the_first_question).
    """
    return {"samprate": MODEL_SAMPLE_RATE, "loglevel": "FATAL", "dither": True, "seed": DITHER_SEED,
            **main_search(search)}


def main_search(search: dict[str, Any]) -> dict[str, Any]:
    """The decoder settings of the agent's own pass for ``search``."""
    return {"maxhmmpf": search["max_hmm_per_frame"], "fwdflat": search["accurate"], "bestpath": search["accurate"]}


def open_search(search: dict[str, Any]) -> dict[str, Any]:
    """The decoder settings of the out-of-domain check's pass for ``search``."""
    return {**main_search(search), **OPEN_PASS_BEAMS[search["open_pass"]]}


#: Beams of the out-of-domain check's language-model pass, by the STT's
#: ``out_of_domain_search``. The pass tells a phrase from a sentence, and its
#: words are the transcript of a rejected utterance. ``fast`` (beam and pbeam
#: 1e-30, wbeam 1e-20, against pocketsphinx's 1e-48 / 7e-29): the same
#: verdicts on our clips (human, espeak phrases in three voices at three
#: rates, espeak sentences) at about half the CPU (real-time factor 0.044-0.059
#: against 0.094-0.120), which bounds how many talking sessions a server
#: holds (bench/load.py: 15 on 2 cores against 12), but that transcript is
#: rough (79% word errors on the human clips against 22.7%,
#: bench/stt_accuracy.py --open-pass). ``exact``: pocketsphinx's own beams.
OPEN_PASS_BEAMS = {"fast": {"beam": 1e-30, "wbeam": 1e-20, "pbeam": 1e-30},
                   "exact": {"beam": 1e-48, "wbeam": 7e-29, "pbeam": 1e-48}}


class SearchSet:
    """A decoder's language-model searches, by the settings each was made with.

    The decoder's own search has the settings it was made with; ``add``
    makes another (the host, before it forks); ``use`` activates one. Only a
    language-model search is switched here: a grammar search reads
    ``maxhmmpf`` from the decoder's config every frame, which ``use_width``
    sets.
    """

    def __init__(self, decoder, own: dict[str, Any] | None = None):
        self.decoder = decoder
        self._names: dict[tuple, str | None] = {} if own is None else {self._key(own): None}  # None: the own search

    @staticmethod
    def _key(settings: dict[str, Any]) -> tuple:
        return tuple(sorted(settings.items()))

    def add(self, settings: dict[str, Any]) -> None:
        """Makes a language-model search with ``settings`` laid over the decoder's config (unless it has one)."""
        key = self._key(settings)
        if key in self._names:
            return
        config = self.decoder.config
        before = {name: config[name] for name in settings}
        name = f"search{len(self._names)}"
        try:
            for setting, value in settings.items():
                config[setting] = value
            self.decoder.add_lm(name, self.decoder.get_lm())
        finally:  # the decoder's own settings stay: grammar searches made later read them
            for setting, value in before.items():
                config[setting] = value
        self._names[key] = name

    def use(self, settings: dict[str, Any]) -> None:
        """Activates the search made with ``settings`` (between utterances); KeyError if none was made."""
        self.decoder.activate_search(self._names[self._key(settings)])

    def use_width(self, settings: dict[str, Any]) -> None:
        """Sets the ``maxhmmpf`` a grammar search reads every frame."""
        self.decoder.config["maxhmmpf"] = settings["maxhmmpf"]


def _die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask Linux to send ``sig`` to this process when its parent exits (PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL(None).prctl(1, sig)
    except (OSError, AttributeError):
        pass  # not Linux: children still exit at EOF on their socket


def _remove_socket_on_sigterm(socket_path: str) -> None:
    """On SIGTERM, remove the socket and its private folder, then exit.

    The host gets SIGTERM when the agents' process dies, whatever killed it
    (PR_SET_PDEATHSIG), and from ``DecoderHost.shutdown``: the folder never
    outlives the host, even when the agents' process had no chance to clean up.
    """

    def remove_and_exit(signum, frame) -> None:
        for remove, path in ((os.unlink, socket_path), (os.rmdir, os.path.dirname(socket_path))):
            try:
                remove(path)
            except OSError:
                pass
        os._exit(0)

    signal.signal(signal.SIGTERM, remove_and_exit)


def read_message(stream: BinaryIO) -> tuple[bytes, bytes] | None:
    header = stream.read(protocol.HEADER.size)
    if len(header) < protocol.HEADER.size:
        return None
    tag, length = protocol.HEADER.unpack(header)
    payload = stream.read(length) if length else b""
    if len(payload) < length:
        return None
    return tag, payload


class StreamDecoder:
    """One agent's stream: pre-roll, utterances, interim and final hypotheses."""

    def __init__(self, searches: SearchSet, conn: socket.socket, open_searches: SearchSet | None = None):
        """``searches``: the decoder's; ``open_searches``: the out-of-domain check's language-model decoder's."""
        from pocketsphinx import Vad

        self._searches = searches
        self._open_searches = open_searches
        self._decoder = searches.decoder
        self._open_decoder = open_searches.decoder if open_searches else None
        self._check: DomainCheck | None = None
        self._grammar = False
        self._settings: dict[str, Any] = {}  # the search and interim_secs in use (FINAL says them)
        self._retuned: dict[str, Any] | None = None  # what RETUNE asked, used from the next START
        self._vad = Vad(Vad.LOOSE, MODEL_SAMPLE_RATE)
        self._conn = conn
        self._resampler = None
        self._preroll: deque[tuple[float, bytes]] = deque()  # (arrival, pcm)
        self._preroll_bytes = 0
        self._preroll_limit = 0
        self._preroll_secs = 0.0
        self._interim_bytes = 0
        self._since_interim = 0
        self._in_utterance = False
        self._last_interim = ""

    def _send(self, tag: bytes, value: Any) -> None:
        self._conn.sendall(protocol.encode_json(tag, value))

    def configure(self, config: dict[str, Any]) -> None:
        """Apply the agent's CONFIG: sample rate, grammar, pre-roll and interim pacing."""
        sample_rate = int(config["sample_rate"])
        if sample_rate != MODEL_SAMPLE_RATE:
            import soxr

            self._resampler = soxr.ResampleStream(sample_rate, MODEL_SAMPLE_RATE, 1, dtype="int16")
        bytes_per_sec = MODEL_SAMPLE_RATE * 2
        self._preroll_secs = config["preroll_secs"]
        self._preroll_limit = int(self._preroll_secs * bytes_per_sec)
        self._settings = {"search": config.get("search"), "interim_secs": config["interim_secs"]}
        self._interim_bytes = int(config["interim_secs"] * bytes_per_sec)
        if config.get("grammar"):
            self._grammar = True
            try:
                self._decoder.add_jsgf_string(GRAMMAR_SEARCH, config["grammar"])
            except (ValueError, RuntimeError) as e:
                self._send(protocol.ERROR, {"message": f"grammar: {e}"})
                return
            self._decoder.activate_search(GRAMMAR_SEARCH)
            margin = config.get("out_of_domain_margin")
            if margin is not None and self._open_decoder is not None:
                self._check = DomainCheck(self._open_decoder, margin, FRAMES_PER_SEC)
        if self._settings["search"]:
            self._use(self._settings["search"])
        self._send(protocol.READY, {})

    def retune(self, settings: dict[str, Any]) -> None:
        """Keeps RETUNE's ``search`` and ``interim_secs`` for the next utterance (never the one running)."""
        self._retuned = settings

    def _use(self, search: dict[str, Any]) -> None:
        """Decodes with ``search`` from the next ``start_utt`` on."""
        if self._grammar:
            self._searches.use_width(main_search(search))
        else:
            self._searches.use(main_search(search))
        if self._check:
            self._open_searches.use(open_search(search))

    def _to_model_rate(self, pcm: bytes) -> bytes:
        if self._resampler is None:
            return pcm
        import numpy as np

        return self._resampler.resample_chunk(np.frombuffer(pcm, dtype=np.int16)).tobytes()

    def audio(self, pcm: bytes) -> None:
        """Decode audio during an utterance; otherwise keep it as pre-roll."""
        pcm = self._to_model_rate(pcm)
        if not pcm:
            return
        if not self._in_utterance:
            self._keep_preroll(pcm)
            return
        self._process(pcm)
        self._since_interim += len(pcm)
        if self._interim_bytes and self._since_interim >= self._interim_bytes:
            self._since_interim = 0
            self._send_interim()

    def _keep_preroll(self, pcm: bytes) -> None:
        """Keeps ``pcm``; drops the oldest audio beyond ``preroll_secs`` unless it arrived that recently (a burst)."""
        now = time.monotonic()
        self._preroll.append((now, pcm))
        self._preroll_bytes += len(pcm)
        most = int(MAX_PREROLL_SECS * MODEL_SAMPLE_RATE * 2)
        while self._preroll and self._preroll_bytes - len(self._preroll[0][1]) >= self._preroll_limit and (
            now - self._preroll[0][0] > self._preroll_secs or self._preroll_bytes > most
        ):
            self._preroll_bytes -= len(self._preroll.popleft()[1])

    def _process(self, pcm: bytes) -> None:
        self._decoder.process_raw(pcm, False, False)
        if self._check:
            self._check.process(pcm)

    def _send_interim(self) -> None:
        hyp = self._decoder.hyp()
        text = hyp.hypstr if hyp else ""
        if text and text != self._last_interim:
            self._last_interim = text
            self._send(protocol.INTERIM, {"text": text})

    def _from_first_speech(self, preroll: bytes) -> bytes:
        """``preroll`` from ``LEAD_IN_SECS`` before its first speech (its last 0.3 s if none)."""
        step = self._vad.frame_bytes
        for offset in range(0, len(preroll) - step + 1, step):
            if self._vad.is_speech(preroll[offset:offset + step]):
                return preroll[max(0, offset - int(LEAD_IN_SECS * MODEL_SAMPLE_RATE) * 2):]
        return preroll[-int(0.3 * MODEL_SAMPLE_RATE) * 2:]

    def start(self) -> None:
        """Begin an utterance, decoding the pre-roll from just before its first speech."""
        if self._in_utterance:
            return
        if self._retuned is not None:
            self._use(self._retuned["search"])
            self._interim_bytes = int(self._retuned["interim_secs"] * MODEL_SAMPLE_RATE * 2)
            self._settings, self._retuned = self._retuned, None
        self._decoder.start_utt()
        if self._check:
            self._check.start()
        self._in_utterance = True
        self._since_interim = 0
        self._last_interim = ""
        preroll = self._from_first_speech(b"".join(pcm for _, pcm in self._preroll))
        self._preroll.clear()
        self._preroll_bytes = 0
        if preroll:
            self._process(preroll)

    def end(self) -> None:
        """Finish the utterance and send its final hypothesis with word timings."""
        if not self._in_utterance:
            self._send(protocol.FINAL, {"text": "", "words": [], "settings": self._settings})
            return
        self._decoder.end_utt()
        self._in_utterance = False
        hyp = self._decoder.hyp()
        segments = speech_words(self._decoder.seg())  # None when a grammar rejected the speech
        words = [
            [seg.word.split("(")[0], seg.start_frame / FRAMES_PER_SEC, seg.end_frame / FRAMES_PER_SEC]
            for seg in segments
        ]
        final = {"text": hyp.hypstr if hyp else "", "words": words, "settings": self._settings}
        if self._check:
            verdict = self._check.judge([seg.word for seg in segments])
            if verdict.out_of_domain:
                final = {"text": verdict.open_text, "words": verdict.open_words, "out_of_domain": True,
                         "settings": self._settings}
        self._send(protocol.FINAL, final)

    def serve(self) -> None:
        """Handle messages until the agent closes its end of the socket."""
        stream = self._conn.makefile("rb")
        handlers = {
            protocol.AUDIO: self.audio,
            protocol.START: lambda _: self.start(),
            protocol.END: lambda _: self.end(),
            protocol.CONFIG: lambda payload: self.configure(json.loads(payload)),
            protocol.RETUNE: lambda payload: self.retune(json.loads(payload)),
        }
        while (message := read_message(stream)) is not None:
            tag, payload = message
            handlers[tag](payload)


def made_in_order(searches: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``searches`` in the order a decoder makes them: the ``accurate`` ones last.

    Making a language-model search sets whether the decoder's one acoustic
    model keeps a whole utterance's features, which a second pass needs
    (pocketsphinx's ``acmod_set_grow``): the last search made decides. A
    one-pass search made after an ``accurate`` one left it failing every
    ``end_utt``; made before, both decode.
    """
    return sorted(searches, key=lambda search: search["accurate"])


def _serve_child(conn: socket.socket, searches: SearchSet, open_searches: SearchSet | None) -> None:
    _die_with_parent()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the socket is the host's to remove
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        StreamDecoder(searches, conn, open_searches).serve()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the agent went away
    except Exception:
        traceback.print_exc()
        os._exit(1)
    os._exit(0)


def serve(socket_path: str, config: dict[str, Any]) -> None:
    """Load the model, listen on ``socket_path`` and fork a child per connection."""
    _remove_socket_on_sigterm(socket_path)
    _die_with_parent(signal.SIGTERM)
    from pocketsphinx import Decoder

    own, *others = made_in_order(config["searches"])
    searches = SearchSet(Decoder(**decoder_kwargs(own)), main_search(own))
    for search in others if config["language_model"] else ():
        searches.add(main_search(search))
    open_searches = None
    if config["domain_check"]:
        open_searches = SearchSet(Decoder(**decoder_kwargs(own), **OPEN_PASS_BEAMS[own["open_pass"]]), open_search(own))
        for search in others:
            open_searches.add(open_search(search))
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(socket_path)
    server.listen(128)
    while True:
        conn, _ = server.accept()
        if os.fork() == 0:
            server.close()
            _serve_child(conn, searches, open_searches)
        conn.close()


if __name__ == "__main__":
    serve(sys.argv[1], json.loads(sys.argv[2]))
