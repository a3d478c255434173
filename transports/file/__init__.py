"""The ``file`` transport: a WAV file speaks to the agent, the bot answers into files.

Input: a 16-bit PCM WAV at any rate, mono or stereo, resampled to the
transport's input rate and pushed in 20 ms chunks (``input``). Output: the
bot's audio as a WAV on the same timeline as the input (an answer at 3.2 s
into the output file came 3.2 s into the conversation; ``output``), and a
JSONL transcript of the user's and the bot's turns with their times
(``transcript``), and the avatar's poses as JSONL, each with its sample in
the WAV (``poses``). Both ends share one clock (``clock``): the wall clock with
``realtime: true``, otherwise a virtual one that fast-forwards while the
agent only listens.
"""

from pathlib import Path

from pipecat.transports.base_transport import BaseTransport, TransportParams
from pydantic import Field

from pipelines.audio import WavError, read_wav
from pipelines.errors import ConfigError, ConfigErrors
from pipelines.registry import TypeInfo
from pipelines.spec import ConfigFile
from pipelines.transport_contract import AudioTransportParams
from transports.file.clock import Timeline
from transports.file.input import FileInput
from transports.file.output import FileOutput
from transports.file.transcript import Transcript

#: Marks a param as a file path: relative to the config's folder in the file,
#: to the current folder when set with ``--set`` (``pipelines.overrides``).
PATH = {"format": "path"}


class FileParams(AudioTransportParams):
    input: ConfigFile = Field(min_length=1, description="WAV the user says: 16-bit PCM, any rate, mono or stereo", json_schema_extra=PATH)
    output: str = Field("", description="WAV of the bot's audio on the input's timeline; empty: not written",
                        json_schema_extra=PATH)
    transcript: str = Field("", description="JSONL of user and bot turns with times; empty: not written",
                            json_schema_extra=PATH)
    poses: str = Field("", description="JSONL of the avatar's poses, each with its sample in the output WAV; "
                       "empty: not written", json_schema_extra=PATH)
    audio_out_10ms_chunks: int = Field(4, ge=1, le=10, description="bot audio written per chunk, in 10 ms (pipecat's default)")
    realtime: bool = Field(False, description="play the input at its real pace instead of fast-forwarding")
    speed: float = Field(8.0, gt=0, le=1000, description="fast mode: times real time while the agent only listens")
    tail_secs: float = Field(1.0, ge=0, le=60, description="silence after the input, once the bot is quiet, before the end")
    reply_timeout_secs: float = Field(5.0, gt=0, le=600, description="real seconds to wait for an answer after the user stops")


class FileTransport(BaseTransport):
    """A WAV file in; a WAV and a JSONL transcript out."""

    def __init__(self, options: FileParams, *, pcm: bytes, output: Path | None, transcript: Path | None,
                 poses: Path | None = None, name: str | None = None):
        super().__init__(name=name)
        params = TransportParams(**options.audio_io())
        self.timeline = Timeline(realtime=options.realtime)
        self._input = FileInput(params, pcm=pcm, options=options, timeline=self.timeline,
                                transcript=Transcript(transcript), name="input")
        self._output = FileOutput(params, path=output, timeline=self.timeline,
                                  input_secs=self._input.input_secs, poses=poses, name="output")

    def input(self) -> FileInput:
        return self._input

    def output(self) -> FileOutput:
        return self._output


def _resolve(folder: Path, path: str) -> Path | None:
    return (folder / path).expanduser().resolve() if path else None


def make_file_transport(params: FileParams, ctx) -> FileTransport:
    """Reads the input WAV (so a bad file fails at build time) and makes the transport.

    Relative paths are resolved against the config's folder; output folders
    are created.

    Raises:
        ConfigErrors: One line naming the key and the file that cannot be used.
    """
    source = _resolve(ctx.config_dir, params.input)
    try:
        pcm = read_wav(source, params.audio_in_sample_rate)
    except WavError as e:
        raise ConfigErrors([ConfigError(None, "transport.input", str(e))]) from None
    output = _resolve(ctx.config_dir, params.output)
    transcript = _resolve(ctx.config_dir, params.transcript)
    poses = _resolve(ctx.config_dir, params.poses)
    for key, path in (("transport.output", output), ("transport.transcript", transcript), ("transport.poses", poses)):
        if path:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise ConfigErrors([ConfigError(None, key, f"{path}: cannot create its folder ({e.strerror})")]) from None
    return FileTransport(params, pcm=pcm, output=output, transcript=transcript, poses=poses, name=ctx.processor_id)


async def serve(agent, options) -> None:
    """``framegraph run`` on a file agent: one session, ``--realtime`` honoured.

    Raises:
        ConfigErrors: The input WAV or an output folder cannot be used (the
            command prints them like any other config problem).
    """
    from pipelines.builder import build_agent
    from pipelines.runner import run_worker
    from pipelines.validate import Component

    transport = agent.transport
    if getattr(options, "realtime", False):
        transport = Component(transport.id, transport.type, transport.params.model_copy(update={"realtime": True}))
    await run_worker(build_agent(agent, transport=transport).worker(), handle_sigint=True)
    params = transport.params
    for label, path in (("bot audio", params.output), ("transcript", params.transcript), ("avatar poses", params.poses)):
        if path:
            print(f"{label}: {_resolve(agent.config_dir, path)}")


TYPES = [
    TypeInfo("transport", "file", FileParams, make_file_transport,
             "WAV file in; bot audio WAV, JSONL transcript and avatar poses out, fast or real time", serve=serve),
]
