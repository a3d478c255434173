"""The ``local`` transport type: the machine's microphone and speaker (``local`` extra).

For a developer at a desk: ``framegraph run FILE`` runs one worker on
pipecat's local audio transport (PyAudio/PortAudio) until Ctrl-C. Use
headphones, or the agent hears itself. Configs validate without the extra.
"""


from pydantic import Field

from pipelines.errors import missing_extra
from pipelines.registry import BuildContext, TypeInfo
from pipelines.transport_contract import AudioTransportParams, import_optional_transport


class LocalParams(AudioTransportParams):
    input_device_index: int | None = Field(None, ge=0, le=1000, description="PortAudio input device; default: the system's")
    output_device_index: int | None = Field(None, ge=0, le=1000, description="PortAudio output device; default: the system's")


def make_local_transport(params: LocalParams, ctx: BuildContext):
    """pipecat's local audio transport on the chosen (or default) devices."""
    try:
        local = import_optional_transport("pipecat.transports.local.audio")
    except ImportError as e:
        raise missing_extra("transport", "local", e, "PyAudio, and PortAudio from your system: apt-get install portaudio19-dev") from None
    return local.LocalAudioTransport(
        local.LocalAudioTransportParams(
            **params.audio_io(),
            input_device_index=params.input_device_index,
            output_device_index=params.output_device_index,
        )
    )


TYPES = [
    TypeInfo(
        kind="transport",
        name="local",
        params=LocalParams,
        factory=make_local_transport,
        summary="this machine's microphone and speaker (PyAudio); `local` extra",
    ),
]
