"""Params every audio transport shares."""

from pydantic import Field

from pipelines.spec import Params


class AudioTransportParams(Params):
    audio_in_sample_rate: int = Field(16000, gt=0)
    audio_out_sample_rate: int = Field(24000, gt=0)
