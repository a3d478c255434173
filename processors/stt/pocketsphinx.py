"""PocketsphinxSTTService: streaming offline STT whose decoding runs in another process.

Audio is streamed to the agent's own forked decoder (see
:mod:`processors.stt.decoder_host`) as it arrives. VAD's start begins an
utterance (with the pre-roll the decoder kept, so the first syllables VAD
needed to decide are not lost); VAD's stop ends it, and the final
``TranscriptionFrame(finalized=True)`` follows within tens of milliseconds,
which lets pipecat's turn strategies end the turn at once instead of waiting
out their STT timeout. Interim transcripts arrive while the user speaks; word
timings (seconds from the utterance's first pre-roll sample) ride in the final
frame's ``result``.

With a closed domain (a grammar or phrase list) and ``out_of_domain_margin``
set, an utterance the open-vocabulary check rejects (see
:mod:`processors.stt.out_of_domain`) is transcribed as what that pass heard,
with ``result["out_of_domain"]`` true, instead of as the nearest phrase: a
scripted LLM then gives its fallback, a real one sees the user's own words.

Under load (the server's DEGRADED level, docs/backpressure.md) a running
service is ``retune``-d with the agent's ``backpressure.degraded`` params
and back: its decoder switches search and interim pacing at the next
utterance (``Search``; the host made both searches before forking), the
final frame's ``result["settings"]`` says what decoded it.

Final transcripts are written like text (:class:`~processors.stt.grammar.PhraseSpelling`):
a phrase as the phrase list spells it, other speech in sentence case with a
final mark; the decoder's own lower-case hypothesis is ``result["raw"]``.
"""

from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    InterimTranscriptionFrame,
    StartFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.services.settings import STTSettings
from pipecat.services.stt_service import STTService
from pipecat.transcriptions.language import Language
from pipecat.utils.time import time_now_iso8601

from processors.stt.decoder_pool import DecoderError, DecoderEvent, DecoderStream, HostConfig, Search, decoder_host
from processors.stt.grammar import PhraseSpelling


class PocketsphinxSTTService(STTService):
    """US English speech-to-text with pocketsphinx, one forked decoder per agent."""

    def __init__(
        self,
        *,
        host_config: HostConfig,
        grammar: str | None = None,
        phrases: list[str] | None = None,
        preroll_secs: float = 1.0,
        interim_secs: float = 0.3,
        out_of_domain_margin: float | None = None,
        search: Search | None = None,
        **kwargs,
    ):
        """Initialize the service.

        Args:
            host_config: Which shared decoder host to use (one per configuration and process).
            grammar: JSGF text restricting recognition, or None for the language model.
            phrases: The phrase list the grammar was made from, as the config spells them
                (a final transcript of one is written that way).
            preroll_secs: Audio kept before VAD's start; the decoder starts just before its first speech.
            interim_secs: Speech between interim transcripts; 0 disables them.
            out_of_domain_margin: With a grammar, reject utterances the open-vocabulary
                pass finds outside it (None: never reject). The host must load that pass
                (``HostConfig.domain_check``).
            search: The search to start with, one of ``host_config.searches`` (None: the first).
            **kwargs: STTService arguments (``ttfs_p99_latency``, ``name``...).
        """
        super().__init__(
            settings=STTSettings(model="pocketsphinx-en-us", language=Language.EN_US), **kwargs
        )
        self._host_config = host_config
        self._grammar = grammar
        self._spelling = PhraseSpelling(phrases)
        self._preroll_secs = preroll_secs
        self._interim_secs = interim_secs
        self._out_of_domain_margin = out_of_domain_margin
        self._search = search or host_config.searches[0]
        self._stream: DecoderStream | None = None
        self._receive_task = None

    async def start(self, frame: StartFrame):
        """Connect to a forked decoder (waiting for the host's first load if needed)."""
        await super().start(frame)
        self._stream = await self._connect()
        self._receive_task = self.create_task(self._receive(), name="pocketsphinx_receive")

    async def _connect(self) -> DecoderStream:
        """A stream to a decoder of this agent's own (from a new host if the old one died)."""
        search, interim_secs = self._search, self._interim_secs
        stream = await decoder_host(self._host_config).open_stream(
            sample_rate=self.sample_rate,
            grammar=self._grammar,
            preroll_secs=self._preroll_secs,
            interim_secs=interim_secs,
            out_of_domain_margin=self._out_of_domain_margin,
            search=search,
        )
        if (self._search, self._interim_secs) != (search, interim_secs):  # retuned while it connected
            stream.retune(self._search, self._interim_secs)
        return stream

    def retune(self, params) -> None:
        """Takes ``params``' search and ``interim_secs`` from the next utterance on (the load level's DEGRADED).

        ``params`` is a ``PocketsphinxParams`` whose search the host made
        (the agent's own or its degraded ones); the utterance being decoded
        finishes as it began, and no audio is lost: the switch rides the
        same socket, in order, and takes effect at the next VAD start. The
        other params stay as built.
        """
        search = Search.of(params)
        if search not in self._host_config.searches:
            raise ValueError(f"{self.name}: the decoder host made no search {search} "
                             f"(it has {list(self._host_config.searches)})")
        self._search, self._interim_secs = search, params.interim_secs
        if self._stream:
            self._stream.retune(search, self._interim_secs)

    def can_generate_metrics(self) -> bool:
        """Yes: usage (seconds of input audio, pipecat's ``STTUsageMetricsData``) is reported."""
        return True

    async def stop(self, frame: EndFrame):
        """Close the decoder on a graceful end."""
        await super().stop(frame)
        await self._close()

    async def cancel(self, frame: CancelFrame):
        """Close the decoder at once."""
        await super().cancel(frame)
        await self._close()

    async def _close(self):
        if self._receive_task:
            await self.cancel_task(self._receive_task)
            self._receive_task = None
        if self._stream:
            await self._stream.close()
            self._stream = None

    async def run_stt(self, audio: bytes):
        """Stream ``audio`` to the decoder; transcripts come back from ``_receive``."""
        if self._stream:
            self._stream.send_audio(audio)
        yield None

    async def _handle_vad_user_started_speaking(self, frame: VADUserStartedSpeakingFrame):
        await super()._handle_vad_user_started_speaking(frame)
        if self._stream:
            self._stream.start_utterance()

    async def _handle_vad_user_stopped_speaking(self, frame: VADUserStoppedSpeakingFrame):
        await super()._handle_vad_user_stopped_speaking(frame)
        if self._stream:
            self._stream.end_utterance()

    async def _receive(self):
        """Pushes the decoder's transcripts; reconnects if its process dies."""
        while self._stream:
            while (event := await self._stream.next_event()) is not None:
                await self._push_event(event)
            await self.push_error("pocketsphinx decoder process ended unexpectedly; reconnecting")
            self._stream = None
            try:
                self._stream = await self._connect()
            except DecoderError as e:
                await self.push_error(f"pocketsphinx: {e}")
                return
            if self._user_speaking:
                self._stream.start_utterance()

    async def _push_event(self, event: DecoderEvent):
        if not event.text:
            return
        if not event.final:
            await self.push_frame(
                InterimTranscriptionFrame(event.text, self._user_id, time_now_iso8601(), Language.EN_US)
            )
            return
        words = [{"word": w, "start": start, "end": end} for w, start, end in event.words]
        result = {"words": words, "raw": event.text, "settings": event.settings}
        if event.out_of_domain:
            result["out_of_domain"] = True
        in_grammar = self._grammar is not None and not event.out_of_domain
        await self.push_frame(
            TranscriptionFrame(
                self._spelling.write(event.text, in_grammar=in_grammar),
                self._user_id,
                time_now_iso8601(),
                Language.EN_US,
                result=result,
                finalized=True,
            )
        )
        await self.emit_stt_usage_metrics()  # one report per final transcript, as pipecat's services do
