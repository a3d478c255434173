"""espeak-ng text-to-speech, in process, through the ``espeakng-loader`` wheel.

The wheel ships ``libespeak-ng`` and its data; we call the C API through
ctypes in ``AUDIO_OUTPUT_SYNCHRONOUS`` mode, so audio and phoneme events come
back through one callback as they are synthesized (docs/pipecat-facts.md,
"espeak-ng").

libespeak-ng keeps its voice, parameters and callback in global state: two
syntheses at once in one process would corrupt each other. Every call into
the library therefore runs on one dedicated thread (``EspeakEngine``), one
synthesis at a time, whatever the number of agents. Synthesis runs at several
hundred times real time, so a sentence holds that thread for a few
milliseconds; the queueing this adds is measured in docs/speaking.md.
"""

import ctypes
import threading
from abc import abstractmethod
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import espeakng_loader
import numpy as np
import soxr
from pipecat.frames.frames import DataFrame, ErrorFrame, Frame, TTSAudioRawFrame
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TTSService
from pipecat.utils.types import NOT_GIVEN, NotGiven

from processors.tts.threaded import thread_stream

# espeak-ng's C constants (speak_lib.h).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_PHONEME_IPA = 0x0002
_INITIALIZE_DONT_EXIT = 0x8000
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_PARAM_RATE, _PARAM_PITCH = 1, 3
_EVENT_LIST_TERMINATED, _EVENT_WORD, _EVENT_PHONEME = 0, 1, 7
_EE_OK = 0


class _Event(ctypes.Structure):
    """``espeak_EVENT``; ``id`` is the union, read as the phoneme name's 8 bytes."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclass
class PhonemeFrame(DataFrame):
    """One phoneme the bot is about to say, for the avatar's mouth.

    Interruptible like the audio it describes, and pushed right before the
    audio chunk in which it starts, so both are flushed together.

    Parameters:
        phoneme: The phoneme in IPA (may be empty for a pause).
        offset_ms: Where it starts, in milliseconds from the first sample of
            its TTS context's audio (one bot reply: its sentences run on).
        context_id: The TTS context it belongs to.
    """

    phoneme: str = ""
    offset_ms: int = 0
    context_id: str | None = None


@dataclass
class _Job:
    """One synthesis request, handed from the event loop to the espeak thread."""

    text: str
    voice: str
    rate: int
    pitch: int
    out_rate: int
    emit: Callable[[Any], None]  # called from the espeak thread; thread-safe
    aborted: threading.Event = field(default_factory=threading.Event)
    resampler: soxr.ResampleStream | None = None



class UnknownVoiceError(ValueError):
    """The voice named in the config is not one espeak-ng knows."""


class EspeakEngine:
    """The process's single gateway to libespeak-ng.

    Owns the library, its one worker thread and the current job; see the
    module docstring for why everything funnels through one thread.
    """

    def __init__(self):
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="espeak")
        self._lib: Any = None
        self.native_rate = 0
        self._job: _Job | None = None
        # Kept referenced for as long as the library may call it.
        self._callback = _SynthCallback(self._on_synth)

    def _ensure_loaded(self) -> None:
        if self._lib is not None:
            return
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]
        options = _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_PHONEME_IPA | _INITIALIZE_DONT_EXIT
        # Always pass the wheel's own data path: the library's built-in default
        # points at a system folder that does not exist on most machines.
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), options
        )
        if rate <= 0:
            raise RuntimeError("espeak-ng failed to initialize")
        lib.espeak_SetSynthCallback(self._callback)
        self._lib, self.native_rate = lib, rate

    async def stream(
        self, text: str, *, voice: str, rate: int, pitch: int, sample_rate: int
    ) -> AsyncGenerator[tuple[bytes, list[tuple[str, int]], list[tuple[str, int]]], None]:
        """Synthesizes ``text``, yielding (PCM at ``sample_rate``, [(phoneme, offset ms)], [(word, offset ms)]) as it goes.

        A word runs from where espeak-ng says it starts to the next white
        space, so its punctuation stays with it ("time," "speak.").

        Closing or cancelling the generator aborts the synthesis at the
        library's next callback (a few milliseconds of audio at most).

        Raises:
            UnknownVoiceError: espeak-ng does not know ``voice``.
        """
        def work(emit, aborted):
            self._run(_Job(text=text, voice=voice, rate=rate, pitch=pitch, out_rate=sample_rate, emit=emit,
                           aborted=aborted))

        async with aclosing(thread_stream(self._executor, work)) as items:
            async for item in items:
                yield item

    def _run(self, job: _Job) -> None:
        if job.aborted.is_set():  # interrupted while waiting for the thread
            return
        self._ensure_loaded()
        if self._lib.espeak_SetVoiceByName(job.voice.encode()) != _EE_OK:
            raise UnknownVoiceError(f"unknown espeak voice {job.voice!r}")
        self._lib.espeak_SetParameter(_PARAM_RATE, job.rate, 0)
        self._lib.espeak_SetParameter(_PARAM_PITCH, job.pitch, 0)
        if job.out_rate != self.native_rate:
            job.resampler = soxr.ResampleStream(self.native_rate, job.out_rate, 1, dtype="int16")
        text = job.text.encode("utf-8")
        self._job = job
        try:
            self._lib.espeak_Synth(text, len(text) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        finally:
            self._job = None
        if job.resampler is not None and not job.aborted.is_set():
            tail = job.resampler.resample_chunk(np.zeros(0, dtype=np.int16), last=True)
            if len(tail):
                job.emit((tail.tobytes(), [], []))

    def _on_synth(self, wav, num_samples, events) -> int:
        """libespeak-ng's callback: one chunk of audio and the events inside it."""
        job = self._job
        if job is None or job.aborted.is_set():
            return 1  # abort the synthesis
        phonemes, words = [], []
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            event = events[i]
            if event.type == _EVENT_PHONEME:
                name = bytes(event.id).split(b"\0", 1)[0].decode("utf-8", "replace")
                phonemes.append((name, event.audio_position))
            elif event.type == _EVENT_WORD and event.text_position > 0:
                start = event.text_position - 1  # 1-based, in characters
                words.append((_word_at(job.text, start, event.length), event.audio_position))
            i += 1
        audio = b""
        if num_samples > 0:
            samples = np.ctypeslib.as_array(wav, shape=(num_samples,)).copy()
            if job.resampler is not None:
                samples = job.resampler.resample_chunk(samples)
            audio = samples.tobytes()
        if audio or phonemes or words:
            job.emit((audio, phonemes, words))
        return 0


def _word_at(text: str, start: int, length: int) -> str:
    """The word espeak-ng reports at ``start``, with what follows it up to the next white space."""
    end = start + max(length, 1)
    while end < len(text) and not text[end].isspace():
        end += 1
    return text[start:end]


_engine: EspeakEngine | None = None
_engine_lock = threading.Lock()


def espeak_engine() -> EspeakEngine:
    """The process-wide engine, created on first use."""
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = EspeakEngine()
        return _engine


@dataclass
class EspeakTTSSettings(TTSSettings):
    """Runtime-updatable settings of :class:`EspeakTTSService`.

    Parameters:
        rate: Speaking rate in words per minute (espeak-ng: 80-450).
        pitch: Base pitch, 0-100 (espeak-ng's default is 50).
    """

    rate: int | NotGiven = field(default_factory=lambda: NOT_GIVEN)
    pitch: int | NotGiven = field(default_factory=lambda: NOT_GIVEN)



class PhonemeTTSService(TTSService):
    """A pipecat TTS service over an engine that streams (audio, phonemes, words) chunks as it synthesizes.

    Serves espeak-ng and Piper alike: each chunk's :class:`PhonemeFrame` s are
    pushed, then its audio at once as a ``TTSAudioRawFrame``. With
    ``word_timing``, its words go to pipecat's word timestamps
    (``add_word_timestamps``): each comes out as a ``TTSTextFrame`` timed to
    its audio, so the output releases it when it plays and the context keeps
    what was heard word by word; without it, a sentence's text follows its
    audio, as pipecat's services without word timestamps do. Offsets run on
    across the sentences of one reply (the audio already made per context is
    kept until the context completes or is interrupted). A subclass says how
    to start its engine on a sentence (:meth:`_synthesize`).
    """

    def __init__(self, *, settings: TTSSettings, word_timing: bool, **kwargs):
        """Creates the service; ``kwargs`` go to pipecat's ``TTSService`` (``sample_rate``, ``name``...)."""
        super().__init__(push_start_frame=True, push_stop_frames=True, push_text_frames=not word_timing,
                         settings=settings, **kwargs)
        self._word_timing = word_timing
        # Audio already made per context (ms), so phoneme offsets run on
        # across the sentences of one reply.
        self._context_ms: dict[str, float] = {}

    def can_generate_metrics(self) -> bool:
        """TTFB and usage metrics are reported."""
        return True

    @abstractmethod
    def _synthesize(self, text: str, context_id: str) -> AsyncGenerator[tuple[bytes, list, list], None]:
        """The engine's stream of (PCM at the output rate, [(phoneme, offset ms)], [(word, offset ms)]) for ``text``."""

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        """Synthesizes ``text``, yielding phoneme and audio frames as they come; an unknown voice is an ``ErrorFrame``."""
        await self.start_tts_usage_metrics(text)
        chunks = self._synthesize(text, context_id)
        base_ms = self._context_ms.get(context_id, 0.0)
        samples = 0
        try:
            async for audio, phonemes, words in chunks:
                for phoneme, offset_ms in phonemes:
                    yield PhonemeFrame(phoneme=phoneme, offset_ms=round(base_ms + offset_ms), context_id=context_id)
                if words and self._word_timing:
                    await self.add_word_timestamps([(w, (base_ms + ms) / 1000) for w, ms in words], context_id)
                if audio:
                    samples += len(audio) // 2
                    await self.stop_ttfb_metrics()
                    yield TTSAudioRawFrame(audio, self.sample_rate, 1, context_id=context_id)
        except UnknownVoiceError as e:
            yield ErrorFrame(error=f"{self}: {e}")
        finally:
            self._context_ms[context_id] = base_ms + samples * 1000 / self.sample_rate
            await self.stop_ttfb_metrics()

    async def on_audio_context_completed(self, context_id: str):
        """Forgets a finished context's running audio length."""
        self._context_ms.pop(context_id, None)

    async def on_audio_context_interrupted(self, context_id: str):
        """Forgets an interrupted context's running audio length."""
        self._context_ms.pop(context_id, None)


class EspeakTTSService(PhonemeTTSService):
    """A pipecat TTS service speaking with espeak-ng, streaming as it synthesizes.

    Each sentence is synthesized on the shared espeak thread; every chunk the
    library produces is resampled to the output rate and pushed as
    :class:`PhonemeTTSService` says. An interruption cancels ``run_tts``, which
    marks the job aborted: the library's next callback returns 1 and synthesis
    stops mid-sentence.
    """

    Settings = EspeakTTSSettings
    _settings: Settings

    def __init__(self, *, voice: str = "en-us", rate: int = 175, pitch: int = 50, word_timing: bool = False, **kwargs):
        """Creates the service.

        Args:
            voice: espeak-ng voice name, optionally with a variant (``en-us+f3``).
            rate: Words per minute.
            pitch: Base pitch, 0-100.
            word_timing: Time each word to its audio (word-level context); needs an output with a
                playback clock (pipecat's outputs release timed frames by it).
            **kwargs: Passed to pipecat's ``TTSService`` (``sample_rate``, ``name``...).
        """
        settings = self.Settings(model=None, voice=voice, language=None, rate=rate, pitch=pitch)
        super().__init__(settings=settings, word_timing=word_timing, **kwargs)
        self._engine = espeak_engine()

    def _synthesize(self, text: str, context_id: str):
        """espeak-ng's stream for ``text`` with the current voice, rate and pitch."""
        return self._engine.stream(
            text,
            voice=str(self._settings.voice),
            rate=int(self._settings.rate),
            pitch=int(self._settings.pitch),
            sample_rate=self.sample_rate,
        )


async def synthesize_pcm(
    text: str, *, voice: str = "en-us", rate: int = 175, pitch: int = 50, sample_rate: int = 16000
) -> bytes:
    """The whole of ``text`` spoken by espeak-ng, as 16-bit mono PCM at ``sample_rate``.

    For making test speech and sample inputs; agents use the streaming service.
    """
    chunks = [audio async for audio, _, _ in espeak_engine().stream(
        text, voice=voice, rate=rate, pitch=pitch, sample_rate=sample_rate
    )]
    return b"".join(chunks)

