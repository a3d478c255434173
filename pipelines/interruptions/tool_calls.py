"""A tool call an interruption cancelled ends as cancelled in the context, whatever order its frames arrive in.

pipecat cancels a running call on an interruption (``cancel_on_interruption``)
with a ``FunctionCallCancelFrame``, a system frame; the call's
``FunctionCallInProgressFrame`` is not, and may still wait at the output
behind the audio of what the LLM said before calling it. The cancel then
reaches the assistant aggregator first and finds no call to cancel; the
in-progress frame comes later and writes ``IN_PROGRESS`` into the context,
where it stays: the next LLM run reads a pending tool. ``CancelledCallsSettle``
remembers such a cancel and hands it to the aggregator again once the
in-progress frame is in, so the call ends as ``CANCELLED``.
"""

from pipecat.frames.frames import (
    Frame,
    FunctionCallCancelFrame,
    FunctionCallInProgressFrame,
    FunctionCallsStartedFrame,
)


class CancelledCallsSettle:
    """Watches an assistant context aggregator (pipecat's public event handlers) and settles early cancels.

    Args:
        assistant: the assistant context aggregator.
    """

    def __init__(self, assistant):
        self.assistant = assistant
        self.waiting: set[str] = set()  # calls started whose in-progress frame has not come yet
        self.cancelled: dict[str, FunctionCallCancelFrame] = {}  # of those, the ones a cancel reached first
        assistant.add_event_handler("on_before_process_frame", self.before)
        assistant.add_event_handler("on_after_process_frame", self.after)

    async def before(self, assistant, frame: Frame) -> None:
        if isinstance(frame, FunctionCallsStartedFrame):
            self.waiting.update(call.tool_call_id for call in frame.function_calls)
        elif isinstance(frame, FunctionCallCancelFrame) and frame.tool_call_id in self.waiting:
            self.cancelled[frame.tool_call_id] = frame

    async def after(self, assistant, frame: Frame) -> None:
        if not isinstance(frame, FunctionCallInProgressFrame):
            return
        self.waiting.discard(frame.tool_call_id)
        early = self.cancelled.pop(frame.tool_call_id, None)
        if early is not None:
            await assistant.queue_frame(FunctionCallCancelFrame(
                function_name=early.function_name, tool_call_id=early.tool_call_id, run_llm=early.run_llm))
