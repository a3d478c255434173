"""An example third-party framegraph transport type: ``transport: {type: text_lines}``.

A transport is a type of kind ``transport`` (``pipelines.TypeInfo``) whose
factory returns a pipecat ``BaseTransport``; ``input()`` and ``output()``
are the two ends of the agent's pipeline. What a transport owes framegraph,
each shown in ``framegraph_lines.transport``:

1. params extending ``pipelines.AudioTransportParams`` (the rates every
   transport takes; ``audio_io()`` is pipecat's ``TransportParams`` for them);
2. a factory ``make_<type name>_transport(params, ctx)`` that imports pipecat
   inside, so validating a config stays light;
3. an output that implements the interruption output contract
   (``pipelines.InterruptibleOutput``): list ``pipelines.BufferedOutput``
   before the pipecat base class;
4. both ends call ``set_transport_ready`` once started (pipecat waits for it);
5. the input ends the worker when its peer is done (``EndWorkerFrame``).

A transport that plays audio to a listener also lists
``pipelines.AudioClockedOutput`` first and says in ``playing_after_write``
which sample plays when a write returns (avatar poses leave with their
audio); one that serves many participants declares ``servable`` (see
``pipelines.transport_contract``). This one writes text, so it needs neither.

    transport: {type: text_lines, input: said.txt, output: heard.txt}
"""

from pydantic import Field

from pipelines import AudioTransportParams, BuildContext, ConfigFile, TypeInfo


class TextLinesParams(AudioTransportParams):
    input: ConfigFile = Field(description="text file (relative to the config): each line is sent as one text frame")
    output: str = Field(min_length=1, description="file (relative to the config) the text reaching the output is written to")


def make_text_lines_transport(params: TextLinesParams, ctx: BuildContext):
    """The transport, its files resolved against the config's folder."""
    from framegraph_lines.transport import TextLinesTransport

    return TextLinesTransport(params, ctx.config_dir / params.input, ctx.config_dir / params.output)


TYPES = [
    TypeInfo("transport", "text_lines", TextLinesParams, make_text_lines_transport,
             "text lines from a file in, text frames out to a file (example plug-in)"),
]
