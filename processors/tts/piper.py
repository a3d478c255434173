"""Piper neural text-to-speech, in process, from a voice on disk or in an installed package.

``piper-tts`` (GPL-3.0-or-later, behind the ``voice`` extra) runs a VITS voice
on onnxruntime: a model run makes an utterance's audio (22,050 Hz for
the usual voices) at 15-20x real time on two idle cores. Nothing is downloaded:
the voice is a path or a package that ships its ONNX file
(``processors/tts/types.py`` resolves which).

Streaming. pipecat hands the service a sentence at a time. A VITS model
makes an utterance in two stages: an encoder (text, durations, the latent
frames; about a third of the work) and a HiFi-GAN decoder (frames to audio, the
rest). With the ``onnx`` package (in the extra) the model is cut in two there
at load (:func:`_split_model`), so the decoder can run on any range of frames,
with 10 frames of context on each side, which makes its audio the same as the
whole's. The first utterance of a reply is decoded in a short first block
(20 frames, 0.23 s) and the rest, so the first audio waits for the encoder and
that block only; and the first sentence of a reply is cut into a short first
piece and the rest (:func:`processors.tts.piper_timing.speech_pieces`), so the
encoder runs on a few words, not a whole sentence. Each block's audio is
pushed at once, resampled to the output rate; where a sentence was cut, the
voice's silence around the utterance is never decoded and the rest of it is
trimmed to a word gap, so the cut is not heard as a pause. The voice speaks
one short utterance at load: onnxruntime's first run of a session is slower
than the next ones, and no reply should pay for it.

Timings. The model is also patched at load to output the frames each phoneme
id lasts (piper's own alignment patch), which times the phonemes for the avatar
(:class:`~processors.tts.espeak.PhonemeFrame`, the same frame espeak-ng
pushes) and the words for the context. Without ``onnx`` (or for a voice whose
graph lacks those tensors) the whole model runs at once, words are timed
from the audio's voiced length shared by phoneme counts, and no phonemes are
pushed: the avatar then follows the audio.

One synthesis at a time per voice: a :class:`PiperEngine` per loaded voice and
process owns the voice and one thread (onnxruntime's own threads do the
maths), so the event loop never waits on a model run and agents sharing a
voice share its memory (about 200 MiB once it has spoken). An interruption cancels ``run_tts``,
which marks the job aborted: nothing more of it is pushed, and the thread
drops the job after the model run in progress (one block, tens of ms).
"""

import asyncio
import itertools
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
from pipecat.services.settings import TTSSettings
from pipecat.utils.types import NOT_GIVEN, NotGiven
from piper import PiperVoice, SynthesisConfig
from piper.config import PiperConfig

from processors.tts.espeak import PhonemeTTSService
from processors.tts.piper_timing import (
    KEEP_COMMA_S,
    Piece,
    estimated_timeline,
    id_timeline,
    kept_span,
    phoneme_starts,
    place_words,
    speech_pieces,
    word_starts,
)
from processors.tts.threaded import thread_stream

#: Gain on the voice's raw output (its peaks are about 0.5 of full scale).
_GAIN = 1.6
#: Latent frames of context a block of the decoder needs on each side to come out as the whole utterance
#: decoded at once (HiFi-GAN's reach; on en_US-joe-medium 8 frames differ by 0.2% of full scale, 10 not at all).
_DECODER_CONTEXT = 10
#: Latent frames (256 samples each: 11.6 ms at 22,050 Hz) in the first block of a stream's first utterance,
#: decoded before the rest: the first audio waits for the encoder and this much decoding, not the utterance's.
_FIRST_BLOCK_FRAMES = 20
#: Silence beyond the aligned voice the decoder makes where a sentence was cut, before the energy trim.
_CROP_MARGIN_S = 0.05
#: The model's input and output, the decoder's input (HiFi-GAN's first convolution) and the tensor
#: holding each phoneme id's frames (piper's alignment patch marks it as an output).
_INPUTS, _OUTPUT, _DECODER_CONV, _DURATIONS_OP = ["input", "input_lengths", "scales"], "output", "/dec/conv_pre/Conv", "Ceil"


@dataclass
class LoadedVoice:
    """A voice ready to speak: piper's voice (text to phoneme ids, its config) and how its model runs.

    With ``decoder``, the model was split where its decoder starts: ``voice.session``
    is the encoder, which gives the utterance's latent frames and each phoneme
    id's frames, and ``decoder`` turns any range of those frames into audio.
    Without it, ``voice.session`` is the whole model.
    """

    voice: PiperVoice
    decoder: onnxruntime.InferenceSession | None
    aligned: bool


def load_voice(model: Path, config: Path, threads: int | None = None) -> LoadedVoice:
    """Loads a voice for CPU inference, split at its decoder when the ``onnx`` package can (see :func:`_split_model`)."""
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

    def session(path: Path) -> onnxruntime.InferenceSession:
        return onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])

    with _split_model(model, single_speaker=piper_config.num_speakers <= 1) as (main, decoder):
        main_session = session(main)
        decoder_session = session(decoder) if decoder else None
    voice = PiperVoice(session=main_session, config=piper_config)
    return LoadedVoice(voice, decoder_session, len(main_session.get_outputs()) > 1)


@contextmanager
def _split_model(model: Path, single_speaker: bool) -> Iterator[tuple[Path, Path | None]]:
    """(encoder, decoder) model files of a single-speaker voice; else (the model, None), with durations when it can.

    With the ``onnx`` package the model gets its phoneme durations as an
    output (piper's own alignment patch) and, for a single-speaker voice
    whose graph has the usual decoder, is cut in two at the decoder's input.
    The files are temporary, gone once the sessions have read them: handing
    onnxruntime a patched model as bytes instead left about 90 MiB more
    resident per process.
    """
    try:
        import onnx
        from onnx.utils import Extractor
        from piper.patch_voice_with_alignment import add_alignment_output
    except ImportError:
        yield model, None
        return
    proto = onnx.load(str(model))
    try:
        add_alignment_output(proto)
    except ValueError:  # no such tensor, or the file is patched already
        pass
    outputs = [o.name for o in proto.graph.output]
    latent = next((n.input[0] for n in proto.graph.node if n.name == _DECODER_CONV), None)
    durations = next((o for o in outputs[1:] if o.startswith(f"/{_DURATIONS_OP}")), None)
    with tempfile.TemporaryDirectory(prefix="framegraph-piper-") as folder:
        parts = [Path(folder) / model.name]
        if single_speaker and latent and durations and outputs[0] == _OUTPUT:
            extractor = Extractor(proto)
            models = [extractor.extract_model(_INPUTS, [latent, durations]), extractor.extract_model([latent], [_OUTPUT])]
            parts.append(Path(folder) / f"decoder-{model.name}")
        else:
            models = [proto]
        del proto
        for part, path in zip(models, parts, strict=True):
            onnx.save(part, str(path))
        del models
        yield parts[0], parts[1] if len(parts) > 1 else None


def _pcm(audio: np.ndarray) -> np.ndarray:
    """The model's float audio as 16-bit samples, with :data:`_GAIN`."""
    return (np.clip(audio * _GAIN, -1.0, 1.0) * 32767).astype(np.int16)


class PiperEngine:
    """One loaded Piper voice and the one thread that runs it (see the module docstring)."""

    def __init__(self, model: Path, config: Path, threads: int | None = None):
        self.model, self.config, self.threads = model, config, threads
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="piper")
        self._loaded: LoadedVoice | None = None
        self.aligned = False
        self.native_rate = 0

    async def load(self) -> None:
        """Loads the voice on its thread, once (about 1 s with the split), and speaks a word to warm it up.

        onnxruntime's first run of a session allocates its arena and picks its
        kernels: 1.3x a later run's time, paid here rather than by an agent's first reply.
        """
        await asyncio.get_running_loop().run_in_executor(self._executor, self._ensure_loaded)

    def _ensure_loaded(self) -> LoadedVoice:
        if self._loaded is None:
            loaded = load_voice(self.model, self.config, self.threads)
            self.native_rate = loaded.voice.config.sample_rate
            self.aligned = loaded.aligned
            self._loaded = loaded
            for _ in self._utterance(loaded.voice.phonemize("Hello.")[0], Piece("Hello."), ["Hello."],
                                     SynthesisConfig(), first=True, last=True, base=0, early=True):
                pass
        return self._loaded

    async def stream(
        self, pieces: list[Piece], *, sample_rate: int, length_scale: float | None = None, early: bool = True
    ) -> AsyncGenerator[tuple[bytes, list[tuple[str, float]], list[tuple[str, float]]], None]:
        """Synthesizes ``pieces``, yielding (PCM at ``sample_rate``, [(phoneme, offset ms)], [(word, offset ms)]).

        With ``early`` (a reply's first sentence) the first utterance is
        decoded in a short first block and the rest; without it (later
        sentences, made while earlier ones play) in one go, which spares the
        block's context. Offsets count from the first sample of this stream's audio. Phonemes
        (IPA; "" for a pause) come only from a voice with alignments. Closing
        or cancelling the generator aborts the job: nothing more is synthesized
        after the model run in progress.
        """
        def work(emit, aborted):
            self._run(pieces, sample_rate, length_scale, early, emit, aborted)

        async with aclosing(thread_stream(self._executor, work)) as items:
            async for item in items:
                yield item

    def _run(self, pieces: list[Piece], out_rate: int, length_scale: float | None, early: bool,
             emit: Callable[[Any], None], aborted: threading.Event) -> None:
        if aborted.is_set():  # interrupted while waiting for the thread
            return
        voice = self._ensure_loaded().voice
        resampler = None
        if out_rate != self.native_rate:
            resampler = soxr.ResampleStream(self.native_rate, out_rate, 1, dtype="int16")
        syn_config = SynthesisConfig(length_scale=length_scale)
        made = 0  # native samples emitted so far
        for piece in pieces:
            words = piece.text.split()
            utterances = [p for p in voice.phonemize(piece.text) if p]  # piper's sentences in the piece
            for i, phonemes in enumerate(utterances):
                blocks = self._utterance(phonemes, piece, words, syn_config, first=i == 0,
                                         last=i == len(utterances) - 1, base=made, early=early and made == 0)
                for audio, phonemes_at, words_at in blocks:
                    if aborted.is_set():
                        return
                    made += len(audio)
                    if resampler is not None:
                        audio = resampler.resample_chunk(audio)
                    emit((audio.tobytes(), phonemes_at, words_at))
        if resampler is not None and not aborted.is_set():
            tail = resampler.resample_chunk(np.zeros(0, dtype=np.int16), last=True)
            if len(tail):
                emit((tail.tobytes(), [], []))

    def _model_run(self, ids: list[int], syn_config: SynthesisConfig
                   ) -> tuple[np.ndarray | None, int, Callable[[int, int], np.ndarray]]:
        """Runs the model on one utterance: (samples per phoneme id or None, samples in all, decode).

        ``decode(start, end)`` is the float audio of that sample range: with a
        split model the decoder runs on those frames (and their context) only.
        """
        loaded = self._loaded
        result = loaded.voice.phoneme_ids_to_audio(ids, syn_config, include_alignments=True)
        output, samples_per_id = result if isinstance(result, tuple) else (result, None)
        if loaded.decoder is None:
            return samples_per_id, len(output), lambda start, end: output[start:end]
        # The encoder's first output, the latent frames (192 x frames), came back where piper expects audio.
        latent, hop = output[np.newaxis], loaded.voice.config.hop_length
        name = loaded.decoder.get_inputs()[0].name

        def decode(start: int, end: int) -> np.ndarray:
            low = max(0, start // hop - _DECODER_CONTEXT)
            high = min(latent.shape[2], -(-end // hop) + _DECODER_CONTEXT)
            audio = loaded.decoder.run(None, {name: np.ascontiguousarray(latent[:, :, low:high])})[0].reshape(-1)
            return audio[start - low * hop:end - low * hop]

        return samples_per_id, latent.shape[2] * hop, decode

    def _utterance(self, phonemes: list[str], piece: Piece, words: list[str], syn_config: SynthesisConfig, *,
                   first: bool, last: bool, base: int, early: bool
                   ) -> Iterator[tuple[np.ndarray, list[tuple[str, float]], list[tuple[str, float]]]]:
        """One utterance of ``piece`` as blocks of (audio, phonemes starting in it, words starting in it).

        ``first``/``last``: the utterance begins/ends the piece (the silence
        where its sentence was cut is trimmed). ``words`` are the piece's words
        not yet placed; those this utterance says are taken from it. Offsets
        are ms from the stream's first sample (``base``: native samples before
        this utterance). With ``early`` it is decoded in a short first block
        and the rest, else in one block.
        """
        loaded = self._loaded
        id_map = loaded.voice.config.phoneme_id_map
        samples_per_id, length, decode = self._model_run(loaded.voice.phonemes_to_ids(phonemes), syn_config)
        timeline = id_timeline(phonemes, id_map, samples_per_id) if samples_per_id is not None else []
        if not timeline:  # no alignments: times from the audio itself
            whole = decode(0, length)
            decode, timeline = (lambda start, end: whole[start:end]), estimated_timeline(phonemes, _pcm(whole))
        # Where a sentence was cut, the decoder need not make the voice's silence the trim below drops.
        start, end, margin = 0, length, round(_CROP_MARGIN_S * self.native_rate)
        if first and piece.continues:  # from just before the first phoneme after "^"
            start = max(0, timeline[1][1] - margin)
        if last and piece.joins_next:  # into the silence "$" makes, as far as a comma's pause
            end = min(length, timeline[-1][1] + round(KEEP_COMMA_S * self.native_rate) + margin)
        cuts = [start, end]
        block = _FIRST_BLOCK_FRAMES * loaded.voice.config.hop_length
        if early and loaded.decoder is not None and end - start > 2 * block:
            cuts.insert(1, start + block)

        phonemes_at = phoneme_starts(timeline) if self.aligned else []
        starts, speech_end = word_starts(timeline)
        said = words[:] if last else words[:len(starts)]
        del words[:len(said)]
        words_at = place_words(said, starts, speech_end)
        kept_from = start
        for i, (low, high) in enumerate(itertools.pairwise(cuts)):
            audio = _pcm(decode(low, high))
            keep_start, keep_end = kept_span(audio, piece, first=first and i == 0, last=last and high == end,
                                             rate=self.native_rate)
            kept_from = low + keep_start if i == 0 else kept_from
            until = low + keep_end if high < end else None  # the last block takes what is left
            times = [[(name, (base + min(max(s - kept_from, 0), low + keep_end - kept_from)) * 1000 / self.native_rate)
                      for name, s in timed if until is None or s < until] for timed in (phonemes_at, words_at)]
            del phonemes_at[:len(times[0])], words_at[:len(times[1])]
            yield audio[keep_start:keep_end], times[0], times[1]


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


class PiperTTSService(PhonemeTTSService):
    """A pipecat TTS service speaking with a Piper voice, a piece of a sentence at a time.

    Each sentence is synthesized on the voice's thread and every block is
    pushed as :class:`~processors.tts.espeak.PhonemeTTSService` says (the
    same path as espeak-ng's). An interruption cancels ``run_tts``: nothing
    more of the cut reply is pushed.
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
        super().__init__(settings=settings, word_timing=word_timing, **kwargs)
        self._engine = piper_engine(model_path, config_path, threads)
        self._first_piece_words = first_piece_words

    async def start(self, frame):
        """Loads the voice (once per process) off the event loop; a model that does not load stops the agent."""
        await super().start(frame)
        try:
            await self._engine.load()
        except Exception as e:  # onnx and onnxruntime raise their own types for a broken model file
            await self.push_error(f"cannot load the piper voice {self._engine.model}: {e}", exception=e,
                                  force_treat_as_permanent=True)

    def _synthesize(self, text: str, context_id: str):
        """The voice's stream for ``text``; a reply's first sentence is cut short after its first words."""
        first_sentence = context_id not in self._context_ms
        pieces = speech_pieces(text, self._first_piece_words if first_sentence else 0)
        return self._engine.stream(
            pieces, sample_rate=self.sample_rate, length_scale=self._settings.length_scale, early=first_sentence,
        )

