"""Params every audio transport shares."""

from pydantic import Field

from pipelines.audio import BOT_SAMPLE_RATE, USER_SAMPLE_RATE
from pipelines.spec import Params


class AudioTransportParams(Params):
    audio_in_sample_rate: int = Field(USER_SAMPLE_RATE, gt=0)
    audio_out_sample_rate: int = Field(BOT_SAMPLE_RATE, gt=0)
    audio_out_10ms_chunks: int = Field(
        2, ge=1, le=10, description="bot audio written per chunk, in 10 ms; less is less to cut off on an interruption"
    )

    def audio_io(self) -> dict:
        """Keyword arguments of pipecat's TransportParams for two-way audio at these rates."""
        return dict(
            audio_in_enabled=True,
            audio_out_enabled=True,
            audio_in_sample_rate=self.audio_in_sample_rate,
            audio_out_sample_rate=self.audio_out_sample_rate,
            audio_out_10ms_chunks=self.audio_out_10ms_chunks,
        )
