"""LocalWhisperSTTService: Whisper from a model directory on disk, through transformers on torch.

Any Whisper checkpoint saved with ``save_pretrained`` (a downloaded
``openai/whisper-tiny.en`` folder, a fine-tune) is loaded with
``local_files_only``: nothing is fetched at run time. pipecat's segmented STT
base collects each utterance between VAD's start and stop; the segment is
transcribed in a worker thread so the event loop never waits on torch.
"""

import asyncio

import numpy as np
from pipecat.frames.frames import TranscriptionFrame
from pipecat.services.settings import STTSettings
from pipecat.services.stt_service import SegmentedSTTService
from pipecat.utils.time import time_now_iso8601

#: Whisper's input rate.
WHISPER_SAMPLE_RATE = 16000


class LocalWhisperSTTService(SegmentedSTTService):
    """Transcribes each VAD segment with a local Whisper model."""

    def __init__(self, *, model_path: str, language: str | None = None, max_new_tokens: int = 128,
                 threads: int | None = None, **kwargs):
        """Loads the model (a few hundred milliseconds for tiny models, seconds for large ones).

        Args:
            model_path: A directory holding a Whisper model and its processor.
            language: A language for multilingual models (``en``, ``fr``); None lets Whisper detect it.
            max_new_tokens: The longest transcript, in tokens.
            threads: torch's intra-op threads; None keeps torch's default.
            **kwargs: SegmentedSTTService arguments (``name``...).
        """
        import torch
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        super().__init__(settings=STTSettings(model=model_path, language=language), **kwargs)
        if threads:
            torch.set_num_threads(threads)
        self._processor = WhisperProcessor.from_pretrained(model_path, local_files_only=True)
        self._model = WhisperForConditionalGeneration.from_pretrained(model_path, local_files_only=True).eval()
        self._language = language
        self._max_new_tokens = max_new_tokens

    @property
    def wants_wav_segments(self) -> bool:
        """Segments arrive as raw 16-bit PCM."""
        return False

    def can_generate_metrics(self) -> bool:
        """Processing time is measured per segment."""
        return True

    def transcribe(self, pcm: bytes) -> str:
        """The text of one segment of 16-bit mono PCM at the pipeline's input rate (blocking)."""
        import torch

        audio = np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0
        if self.sample_rate != WHISPER_SAMPLE_RATE:
            import soxr

            audio = soxr.resample(audio, self.sample_rate, WHISPER_SAMPLE_RATE)
        features = self._processor(audio, sampling_rate=WHISPER_SAMPLE_RATE, return_tensors="pt").input_features
        options = {"max_new_tokens": self._max_new_tokens}
        if self._language:
            options["language"] = self._language
        with torch.inference_mode():
            ids = self._model.generate(features, **options)
        return self._processor.batch_decode(ids, skip_special_tokens=True)[0].strip()

    async def run_stt(self, audio: bytes):
        """Transcribes one segment in a worker thread; yields its final transcript, if any."""
        await self.start_processing_metrics()
        text = await asyncio.to_thread(self.transcribe, audio)
        await self.stop_processing_metrics()
        if text:
            yield TranscriptionFrame(text, self._user_id, time_now_iso8601(), self._language, finalized=True)
