"""Piper neural text-to-speech, in process, from a voice on disk or in an installed package.

``piper-tts`` (GPL-3.0-or-later, behind the ``voice`` extra) runs a VITS voice
on onnxruntime: one model run makes a whole sentence's audio (22,050 Hz for
the usual voices) at 15-20x real time on two idle cores. Nothing is downloaded:
the voice is a path or a package that ships its ONNX file
(``processors/tts/types.py`` resolves which).

Streaming. pipecat hands the service a sentence at a time; the first
sentence of a reply is cut into a short first piece and the rest
(:func:`processors.tts.piper_timing.speech_pieces`), so the first audio waits for a few words' synthesis,
not a whole sentence's. Each piece's audio is pushed at once, resampled to the
output rate; the silence the voice puts around an utterance is trimmed where a
sentence was cut, so the cut is not heard as a pause.

Timings. With the ``onnx`` package (in the extra) the model is patched at
load (a temporary copy) to also output the samples each phoneme lasts (piper's own
alignment patch), which times the phonemes for the avatar
(:class:`~processors.tts.espeak.PhonemeFrame`, the same frame espeak-ng
pushes) and the words for the context. Without alignments, words are timed
from the audio's voiced length shared by phoneme counts, and no phonemes are
pushed: the avatar then follows the audio.

One synthesis at a time per voice: a :class:`PiperEngine` per loaded voice and
process owns the voice and one thread (onnxruntime's own threads do the
maths), so the event loop never waits on a model run and agents sharing a
voice share its memory (about 200 MiB once it has spoken). An interruption cancels ``run_tts``,
which marks the job aborted: nothing more of it is pushed, and the thread
drops the job after the model run in progress (one piece, tens of ms).
"""

import asyncio
import json
import tempfile
import threading
from collections.abc import AsyncGenerator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import soxr
from pipecat.frames.frames import Frame, TTSAudioRawFrame
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TTSService
from pipecat.utils.types import NOT_GIVEN, NotGiven
from piper import PiperVoice, SynthesisConfig
from piper.config import PiperConfig

from processors.tts.espeak import PhonemeFrame
from processors.tts.piper_timing import (
    Piece,
    alignment_timeline,
    estimated_timeline,
    kept_span,
    phoneme_starts,
    place_words,
    speech_pieces,
    word_starts,
)
from processors.tts.threaded import thread_stream

#: Gain on the voice's raw output (its peaks are about 0.5 of full scale).
_GAIN = 1.6

def load_voice(model: Path, config: Path, threads: int | None = None) -> tuple[PiperVoice, bool]:
    """Loads a voice for CPU inference: (voice, whether it gives phoneme alignments).

    The model is patched to output its phoneme durations when the ``onnx``
    package is there (``piper.patch_voice_with_alignment``); a model file
    patched beforehand gives them too.
    """
    with open(config, encoding="utf-8") as f:
        piper_config = PiperConfig.from_dict(json.load(f))
    options = onnxruntime.SessionOptions()
    options.inter_op_num_threads = 1
    # Idle onnxruntime threads spin for work by default: on a busy machine (agents sharing cores) that
    # made synthesis 1.5x slower and costlier; without it a sentence took 0.07 of its length, not 0.12.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
    with _with_alignment_output(model) as path:
        session = onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    return PiperVoice(session=session, config=piper_config), len(session.get_outputs()) > 1


@contextmanager
def _with_alignment_output(model: Path) -> Iterator[Path]:
    """A path to the model with its phoneme-duration tensor as an output, or to the model itself.

    The patched copy is a temporary file, gone once the session has read it:
    handing onnxruntime the patched model as bytes instead left about 90 MiB
    more resident per process.
    """
    try:
        import onnx
        from piper.patch_voice_with_alignment import add_alignment_output
    except ImportError:
        yield model
        return
    proto = onnx.load(str(model))
    try:
        add_alignment_output(proto)
    except ValueError:  # no such tensor, or the file is patched already
        yield model
        return
    with tempfile.TemporaryDirectory(prefix="framegraph-piper-") as folder:
        patched = Path(folder) / model.name
        onnx.save(proto, str(patched))
        del proto
        yield patched


class PiperEngine:
    """One loaded Piper voice and the one thread that runs it (see the module docstring)."""

    def __init__(self, model: Path, config: Path, threads: int | None = None):
        self.model, self.config, self.threads = model, config, threads
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="piper")
        self._voice: PiperVoice | None = None
        self.aligned = False
        self.native_rate = 0

    async def load(self) -> None:
        """Loads the voice on its thread, once (about 1 s with the alignment patch)."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self._ensure_loaded)

    def _ensure_loaded(self) -> PiperVoice:
        if self._voice is None:
            self._voice, self.aligned = load_voice(self.model, self.config, self.threads)
            self.native_rate = self._voice.config.sample_rate
        return self._voice

    async def stream(
        self, pieces: list[Piece], *, sample_rate: int, length_scale: float | None = None
    ) -> AsyncGenerator[tuple[bytes, list[tuple[str, float]], list[tuple[str, float]]], None]:
        """Synthesizes ``pieces``, yielding (PCM at ``sample_rate``, [(phoneme, offset ms)], [(word, offset ms)]).

        Offsets count from the first sample of this stream's audio. Phonemes
        (IPA; "" for a pause) come only from a voice with alignments. Closing
        or cancelling the generator aborts the job: nothing more is synthesized
        after the piece in progress.
        """
        def work(emit, aborted):
            self._run(pieces, sample_rate, length_scale, emit, aborted)

        async with aclosing(thread_stream(self._executor, work)) as items:
            async for item in items:
                yield item

    def _run(self, pieces: list[Piece], out_rate: int, length_scale: float | None,
             emit: Callable[[Any], None], aborted: threading.Event) -> None:
        if aborted.is_set():  # interrupted while waiting for the thread
            return
        voice = self._ensure_loaded()
        resampler = None
        if out_rate != self.native_rate:
            resampler = soxr.ResampleStream(self.native_rate, out_rate, 1, dtype="int16")
        # One gain for every piece: piper's default normalises each sentence to full scale, so the
        # pieces of a cut sentence would not match in loudness.
        syn_config = SynthesisConfig(length_scale=length_scale, normalize_audio=False, volume=_GAIN)
        made = 0  # native samples emitted so far
        for piece in pieces:
            words = piece.text.split()
            chunks = iter(voice.synthesize(piece.text, syn_config=syn_config, include_alignments=self.aligned))
            chunk, first = next(chunks, None), True  # one chunk per sentence piper finds in the piece
            while chunk is not None:
                following = next(chunks, None)  # known before this one goes, whose tail may be trimmed
                if aborted.is_set():
                    return
                audio, phonemes, words_at = self._timed(chunk, piece, words, first=first, last=following is None,
                                                        base=made)
                made += len(audio)
                if resampler is not None:
                    audio = resampler.resample_chunk(audio)
                emit((audio.tobytes(), phonemes, words_at))
                chunk, first = following, False
        if resampler is not None and not aborted.is_set():
            tail = resampler.resample_chunk(np.zeros(0, dtype=np.int16), last=True)
            if len(tail):
                emit((tail.tobytes(), [], []))

    def _timed(self, chunk, piece: Piece, words: list[str], *, first: bool, last: bool, base: int):
        """One chunk's audio (trimmed where its sentence was cut), its phonemes and the words it says.

        ``words`` are the piece's words not yet placed; those this chunk says
        are taken from it. Offsets are ms from the stream's first sample
        (``base``: native samples before this chunk).
        """
        audio = chunk.audio_int16_array
        start, end = kept_span(audio, piece, first=first, last=last, rate=self.native_rate)
        timeline = alignment_timeline(chunk) or estimated_timeline(chunk.phonemes, audio)

        def ms(sample: int) -> float:
            return (base + min(max(sample - start, 0), end - start)) * 1000 / self.native_rate

        phonemes = [(p, ms(s)) for p, s in phoneme_starts(timeline)] if self.aligned else []
        starts, speech_end = word_starts(timeline)
        said = words[:] if last else words[:len(starts)]
        del words[:len(said)]
        return audio[start:end], phonemes, [(w, ms(s)) for w, s in place_words(said, starts, speech_end)]


_engines: dict[tuple[Path, Path, int | None], PiperEngine] = {}
_engines_lock = threading.Lock()


def piper_engine(model: Path, config: Path, threads: int | None = None) -> PiperEngine:
    """The process's engine for this voice, created on first use (agents sharing a voice share it)."""
    key = (Path(model).resolve(), Path(config).resolve(), threads)
    with _engines_lock:
        if key not in _engines:
            _engines[key] = PiperEngine(*key)
        return _engines[key]


@dataclass
class PiperTTSSettings(TTSSettings):
    """Runtime-updatable settings of :class:`PiperTTSService`.

    Parameters:
        length_scale: Speaking time scale (above 1 slower); None: the voice's own.
    """

    length_scale: float | None | NotGiven = field(default_factory=lambda: NOT_GIVEN)


class PiperTTSService(TTSService):
    """A pipecat TTS service speaking with a Piper voice, a piece of a sentence at a time.

    Structured like :class:`~processors.tts.espeak.EspeakTTSService`: each
    sentence is synthesized on the voice's thread and every piece's audio is
    pushed at once as a ``TTSAudioRawFrame``, preceded by the
    :class:`~processors.tts.espeak.PhonemeFrame` s that start in it. With
    ``word_timing`` its words go to pipecat's word timestamps (the context
    keeps what was heard word by word); without it, a sentence's text
    follows its audio. An interruption cancels ``run_tts``: nothing more of
    the cut reply is pushed.
    """

    Settings = PiperTTSSettings
    _settings: Settings

    def __init__(self, *, model_path: Path, config_path: Path | None = None, length_scale: float | None = None,
                 threads: int | None = None, first_piece_words: int = 4, word_timing: bool = False, **kwargs):
        """Creates the service; the voice loads when the pipeline starts.

        Args:
            model_path: The voice's ONNX file.
            config_path: Its JSON config (default: ``model_path`` + ``.json``).
            length_scale: Speaking time scale (above 1 slower); None: the voice's own.
            threads: onnxruntime threads for the voice (None: one per core).
            first_piece_words: The first sentence of a reply is cut after about this many words (0: never).
            word_timing: Time each word to its audio (word-level context); needs an output with a playback clock.
            **kwargs: Passed to pipecat's ``TTSService`` (``sample_rate``, ``name``...).
        """
        model_path = Path(model_path)
        config_path = Path(config_path) if config_path else Path(f"{model_path}.json")
        settings = self.Settings(model=model_path.name, voice=model_path.name.removesuffix(".onnx"), language=None,
                                 length_scale=length_scale)
        super().__init__(push_start_frame=True, push_stop_frames=True, push_text_frames=not word_timing,
                         settings=settings, **kwargs)
        self._engine = piper_engine(model_path, config_path, threads)
        self._first_piece_words = first_piece_words
        self._word_timing = word_timing
        # Audio already made per context (ms), so offsets run on across the sentences of one reply.
        self._context_ms: dict[str, float] = {}

    def can_generate_metrics(self) -> bool:
        """TTFB and usage metrics are reported."""
        return True

    async def start(self, frame):
        """Loads the voice (once per process) off the event loop; a model that does not load stops the agent."""
        await super().start(frame)
        try:
            await self._engine.load()
        except Exception as e:  # onnx and onnxruntime raise their own types for a broken model file
            await self.push_error(f"cannot load the piper voice {self._engine.model}: {e}", exception=e,
                                  force_treat_as_permanent=True)

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        """Synthesizes ``text``, yielding phoneme and audio frames as each piece is made."""
        await self.start_tts_usage_metrics(text)
        first_sentence = context_id not in self._context_ms
        base_ms = self._context_ms.get(context_id, 0.0)
        pieces = speech_pieces(text, self._first_piece_words if first_sentence else 0)
        samples = 0
        try:
            async for audio, phonemes, words in self._engine.stream(
                pieces, sample_rate=self.sample_rate, length_scale=self._settings.length_scale,
            ):
                for phoneme, offset_ms in phonemes:
                    yield PhonemeFrame(phoneme=phoneme, offset_ms=round(base_ms + offset_ms), context_id=context_id)
                if words and self._word_timing:
                    await self.add_word_timestamps([(w, (base_ms + ms) / 1000) for w, ms in words], context_id)
                if audio:
                    samples += len(audio) // 2
                    await self.stop_ttfb_metrics()
                    yield TTSAudioRawFrame(audio, self.sample_rate, 1, context_id=context_id)
        finally:
            self._context_ms[context_id] = base_ms + samples * 1000 / self.sample_rate
            await self.stop_ttfb_metrics()

    async def on_audio_context_completed(self, context_id: str):
        """Forgets a finished context's running audio length."""
        self._context_ms.pop(context_id, None)

    async def on_audio_context_interrupted(self, context_id: str):
        """Forgets an interrupted context's running audio length."""
        self._context_ms.pop(context_id, None)

