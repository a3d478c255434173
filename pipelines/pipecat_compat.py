"""framegraph's one seam to pipecat's internals (written for pipecat-ai 1.14.*).

Every read or write of pipecat state that pipecat does not publish lives
here, behind a function named for what framegraph needs; no other module of
the repository names a pipecat private attribute (``tests/test_pipecat_contract.py``
greps for it). ``CONTRACT`` lists each private member relied on, and
``missing_members()`` says which of them (and of the protected hooks
framegraph's subclasses use, ``SUBCLASS_HOOKS``) the installed pipecat lacks: the
contract test fails naming them, so a pipecat release that renames one stops
the build instead of silently zeroing flush statistics or leaving queued
audio playing. Importing this module with another pipecat series raises.

Where pipecat has a public way, it is used instead and the function says so
(``user_turn_strategies`` reads the controller's public property; outputs
restart through pipecat's own ``MediaSender.handle_interruptions``).
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import version
from typing import Any

from pipecat.audio.turn.smart_turn.base_smart_turn import BaseSmartTurn, SmartTurnParams
from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3
from pipecat.audio.vad.vad_analyzer import VADAnalyzer, VADParams
from pipecat.audio.vad.vad_controller import VADController
from pipecat.frames.frames import Frame, InterruptionFrame, OutputImageRawFrame
from pipecat.pipeline.parallel_pipeline import ParallelPipeline
from pipecat.processors.aggregators.llm_response_universal import LLMUserAggregator
from pipecat.processors.frame_processor import FrameProcessor
from pipecat.transports.base_input import BaseInputTransport
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.turns.user_stop import TurnAnalyzerUserTurnStopStrategy
from pipecat.turns.user_turn_controller import UserTurnController
from pipecat.turns.user_turn_strategies import UserTurnStrategies
from pipecat.utils.frame_queue import FrameQueue

#: The pipecat-ai release series this seam was written and tested against.
PIPECAT_SERIES = "1.14"
PIPECAT_VERSION = version("pipecat-ai")
if not PIPECAT_VERSION.startswith(PIPECAT_SERIES + "."):
    raise ImportError(
        f"framegraph's pipecat seam (pipelines/pipecat_compat.py) is written for pipecat-ai {PIPECAT_SERIES}.*, "
        f"not {PIPECAT_VERSION}: install pipecat-ai~={PIPECAT_SERIES}.0 or update the seam and its contract test"
    )

_PROCESS_QUEUE = "_FrameProcessor__process_queue"
_CURRENT_FRAME = "_FrameProcessor__process_current_frame"
_PROCESS_TASK = "_FrameProcessor__process_frame_task"
#: aiortc's name for an audio receiver's jitter buffer (``RTCRtpReceiver.__jitter_buffer``).
_AIORTC_JITTER_BUFFER = "_RTCRtpReceiver__jitter_buffer"


def _aiortc_receive_classes() -> tuple[type, type]:
    from aiortc.jitterbuffer import JitterBuffer
    from aiortc.rtcrtpreceiver import RTCRtpReceiver

    return RTCRtpReceiver, JitterBuffer


def _silero_classes() -> tuple[type, type]:
    from pipecat.audio.vad.silero import SileroOnnxModel, SileroVADAnalyzer

    return SileroVADAnalyzer, SileroOnnxModel


def _smallwebrtc_classes() -> tuple[type, type, type]:
    from pipecat.transports.smallwebrtc.transport import RawAudioTrack, SmallWebRTCClient, SmallWebRTCOutputTransport

    return SmallWebRTCClient, RawAudioTrack, SmallWebRTCOutputTransport


#: Each private member framegraph relies on: (owner class or a loader of it, member name).
CONTRACT: list[tuple[type | Callable[[], type], str]] = [
    (FrameProcessor, _PROCESS_QUEUE),
    (FrameProcessor, _CURRENT_FRAME),
    (FrameProcessor, _PROCESS_TASK),
    (FrameProcessor, "_start_interruption"),
    (FrameProcessor, "_name"),
    (FrameProcessor, "_metrics"),
    (FrameQueue, "_queue"),
    (BaseOutputTransport, "_media_senders"),
    (BaseOutputTransport, "_params"),
    (BaseInputTransport, "_params"),
    (LLMUserAggregator, "_params"),
    (LLMUserAggregator, "_user_turn_controller"),
    (UserTurnController, "_user_turn_strategies"),
    (BaseOutputTransport.MediaSender, "_audio_queue"),
    (BaseOutputTransport.MediaSender, "_audio_runs"),
    (BaseOutputTransport.MediaSender, "_clock_queue"),
    (BaseOutputTransport.MediaSender, "_set_video_image"),
    (LLMUserAggregator, "_vad_controller"),
    (VADController, "_vad_analyzer"),
    (lambda: _silero_classes()[0], "_model"),
    (lambda: _silero_classes()[0], "_windows_since_reset"),
    (lambda: _silero_classes()[0], "_low_confidence_windows"),
    (lambda: _silero_classes()[1], "session"),
    (LocalSmartTurnAnalyzerV3, "_session"),
    (LocalSmartTurnAnalyzerV3, "_log_data"),
    (TurnAnalyzerUserTurnStopStrategy, "_turn_analyzer"),
    (lambda: _smallwebrtc_classes()[2], "_client"),
    (lambda: _smallwebrtc_classes()[0], "_audio_output_track"),
    (lambda: _smallwebrtc_classes()[1], "_chunk_queue"),
    (ParallelPipeline, "_seen_ids"),
    (lambda: _aiortc_receive_classes()[0], _AIORTC_JITTER_BUFFER),  # aiortc's, under pipecat's SmallWebRTC
    (lambda: _aiortc_receive_classes()[1], "_prefetch"),
]


#: Protected members of pipecat classes that framegraph's subclasses of them
#: override or read (the subclassing API pipecat's own services use), by the
#: class that defines them. They stay in the subclasses, where they belong,
#: but a rename would silently turn an override into dead code, so the
#: contract test checks them too, and checks that this list is complete.
SUBCLASS_HOOKS: dict[str, tuple[str, ...]] = {
    "pipecat.processors.frame_processor.FrameProcessor": ("_call_event_handler", "_register_event_handler", "_start_interruption"),
    "pipecat.services.llm_service.LLMService": ("_push_llm_text",),
    "pipecat.services.stt_service.STTService": (
        "_handle_vad_user_started_speaking", "_handle_vad_user_stopped_speaking", "_user_id", "_user_speaking",
    ),
    "pipecat.services.tts_service.TTSService": ("_settings",),
    "pipecat.turns.user_stop.turn_analyzer_user_turn_stop_strategy.TurnAnalyzerUserTurnStopStrategy": (
        "_discard_pending_end_of_turn", "_handle_prediction_result", "_handle_transcription",
        "_handle_vad_user_stopped_speaking",
        "_maybe_trigger_user_turn_stopped", "_stt_timeout", "_text", "_timeout_handler", "_transcript_finalized",
        "_vad_user_speaking", "_stop_secs", "_vad_stopped", "_turn_complete", "_timeout_task",
    ),
    "pipecat.audio.vad.silero.SileroVADAnalyzer": ("_run_analyzer",),
    "pipecat.transports.smallwebrtc.transport.SmallWebRTCTransport": (
        "_call_event_handler", "_register_event_handler", "_client", "_params", "_input_name", "_output_name",
        "_on_app_message", "_on_client_connected", "_on_client_disconnected",
        "_input", "_output",  # the transport puts its own input and output in the slots pipecat's methods read
    ),
    "pipecat.transports.websocket.fastapi.FastAPIWebsocketOutputTransport": (
        "_write_audio_sleep", "_next_send_time", "_send_interval",
    ),
    "pipecat.transports.websocket.fastapi.FastAPIWebsocketTransport": (
        "_call_event_handler", "_register_event_handler", "_client", "_params", "_input_name", "_output_name",
        "_on_client_disconnected",
        "_input", "_output",  # the transport puts its own input and output in the slots pipecat's methods read
    ),
}


def hook_owner(path: str) -> type:
    """The class a ``SUBCLASS_HOOKS`` key names."""
    module, _, name = path.rpartition(".")
    return getattr(import_module(module), name)


def _defines(cls: type, member: str) -> bool:
    """Whether ``cls`` (or a base) has ``member`` as a class attribute or names it on ``self`` in its source.

    ``self.<member>`` must end on a word boundary: ``_input`` is not defined
    by a class that only has ``self._input_name``.
    """
    if hasattr(cls, member):
        return True
    for klass in cls.__mro__:
        if klass is object:
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        plain = member.split("__", 1)[1] if member.startswith(f"_{klass.__name__}__") else None
        if re.search(rf"self\.{re.escape(member)}\b", source) or (
            plain and re.search(rf"self\.__{re.escape(plain)}\b", source)
        ):
            return True
    return False


def missing_members() -> list[str]:
    """``Class.member`` for every ``CONTRACT`` member the installed pipecat lacks (empty when all are there)."""
    owned = [(owner if isinstance(owner, type) else owner(), member) for owner, member in CONTRACT]
    owned += [(hook_owner(path), member) for path, members in SUBCLASS_HOOKS.items() for member in members]
    return [f"{cls.__module__}.{cls.__qualname__}.{member}" for cls, member in owned if not _defines(cls, member)]


# -- a processor's queue and in-flight work ---------------------------------------------------


def queued_frames(processor: FrameProcessor) -> list[Frame]:
    """The frames waiting in ``processor``'s input (process) queue, oldest first.

    pipecat keeps them as (frame, direction, callback) in a private ``FrameQueue``.
    """
    queue = getattr(processor, _PROCESS_QUEUE)
    return [item[0] for item in queue._queue]


def current_frame(processor: FrameProcessor) -> Frame | None:
    """The frame ``processor``'s process task is working on (None between frames)."""
    return getattr(processor, _CURRENT_FRAME)


def process_task(processor: FrameProcessor) -> asyncio.Task | None:
    """The task that processes ``processor``'s non-system frames (pipecat recreates it when an interruption cancels work)."""
    return getattr(processor, _PROCESS_TASK)


@dataclass(frozen=True)
class Originals:
    """A processor's own methods, as they were before ``intercept`` replaced them."""

    process_frame: Callable
    push_frame: Callable
    start_interruption: Callable


def intercept(
    processor: FrameProcessor, *, process_frame: Callable, push_frame: Callable, start_interruption: Callable
) -> Originals:
    """Routes what ``processor`` is given, what it pushes and its flush through the callables given.

    pipecat has no per-processor hook on these paths (observers see frames
    only after they are pushed and cannot drop them), so the bound methods are
    replaced on this one instance: its class and every other instance are untouched.

    Returns:
        The instance's own methods, for the interceptors to call.
    """
    originals = Originals(processor.process_frame, processor.push_frame, processor._start_interruption)
    processor.process_frame = process_frame
    processor.push_frame = push_frame
    processor._start_interruption = start_interruption
    return originals


def wrap_flush(processor: FrameProcessor, wrap: Callable[[Callable], Callable]) -> None:
    """Replaces ``processor``'s flush (what it runs on an interruption) with ``wrap(flush)``; benchmarks time it."""
    processor._start_interruption = wrap(processor._start_interruption)


def intercept_writes(output: BaseOutputTransport, *, write_audio: Callable, write_video: Callable) -> tuple[Callable, Callable]:
    """Routes an output's ``write_audio_frame``/``write_video_frame`` (public, meant to be overridden) through the callables given.

    Returns:
        The instance's own (write_audio_frame, write_video_frame).
    """
    originals = output.write_audio_frame, output.write_video_frame
    output.write_audio_frame = write_audio
    output.write_video_frame = write_video
    return originals


# -- parallel blocks ---------------------------------------------------------------------------


class BranchCopies:
    """What ``ParallelPipeline`` needs of its seen-id set to push one copy of each frame, in bounded memory.

    A frame that enters a parallel block goes down every branch and comes out
    of each; the block pushes the first copy and drops the rest by id
    (``id in seen`` / ``seen.add(id)``). pipecat's plain set keeps every id for
    the life of the session (about 70 bytes a frame). This one remembers a
    frame only from its first copy until its last: frames made inside a branch
    (which come out once) are never remembered, and an id whose last copy never
    comes (a branch consumed the frame) is forgotten once ``limit`` others wait.
    """

    def __init__(self, branches: int, limit: int):
        self._branches = branches
        self._limit = limit
        self._entered: dict[int, None] = {}  # entered the block, no copy out yet
        self._waiting: dict[int, int] = {}  # first copy out: how many copies are still to come

    def enter(self, frame_id: int) -> None:
        """Notes a frame entering the block (going down every branch)."""
        self._entered[frame_id] = None
        _bound(self._entered, self._limit)

    def __contains__(self, frame_id: int) -> bool:
        left = self._waiting.get(frame_id)
        if left is None:
            return False
        if left <= 1:
            del self._waiting[frame_id]
        else:
            self._waiting[frame_id] = left - 1
        return True

    def __len__(self) -> int:
        return len(self._entered) + len(self._waiting)

    def add(self, frame_id: int) -> None:
        if frame_id in self._entered:
            del self._entered[frame_id]
            if self._branches > 1:
                self._waiting[frame_id] = self._branches - 1
                _bound(self._waiting, self._limit)


def _bound(ids: dict, limit: int) -> None:
    """Forgets the oldest entries of ``ids`` (dicts keep insertion order) beyond ``limit``."""
    while len(ids) > limit:
        del ids[next(iter(ids))]


def bound_parallel_seen_ids(block: ParallelPipeline, limit: int) -> BranchCopies:
    """Replaces ``block``'s seen-id set (it grows by one id per frame forever) with a ``BranchCopies``; returns it.

    Call it before anything else wraps the block's ``process_frame``: frames
    entering the block are noted there.
    """
    copies = BranchCopies(len(block.processors), limit)
    block._seen_ids = copies
    process_frame = block.process_frame

    def entering(frame: Frame, direction):
        copies.enter(frame.id)
        return process_frame(frame, direction)

    block.process_frame = entering
    return copies


def parallel_seen_ids(block: ParallelPipeline):
    """The ids ``block`` remembers to drop its branches' duplicate copies (tests and benchmarks read its size)."""
    return block._seen_ids


# -- outputs ----------------------------------------------------------------------------------


async def clear_media_senders(output: BaseOutputTransport, frame: InterruptionFrame | None = None) -> int:
    """Clears the media senders of every destination of ``output``, with pipecat's own ``MediaSender.handle_interruptions``.

    pipecat's output hands an ``InterruptionFrame`` to the sender of the
    frame's own destination only (the default one), so audio or images queued
    for another destination (a second track) would play on: every other
    destination's sender is cleared, and the default one's when it still
    queues anything interruptible (it was not cleared yet).

    Returns:
        How many queued interruptible frames (audio chunks, timed frames) were dropped.
    """
    frame = frame or InterruptionFrame()
    dropped = 0
    for destination, sender in output._media_senders.items():
        queued = sum(1 for f in sender._audio_queue._queue if getattr(f, "interruptible", False))
        queued += sum(1 for _, uninterruptible in sender._audio_runs if not uninterruptible)
        queued += sum(1 for item in sender._clock_queue._queue if item[2].interruptible)
        if destination is not None or queued:
            dropped += queued
            await sender.handle_interruptions(frame)
    return dropped


async def show_video_image(output: BaseOutputTransport, image: OutputImageRawFrame) -> None:
    """Makes ``image`` the image ``output``'s video task shows (and repeats) from now on.

    What pipecat's media sender does with an image it takes from its audio
    queue, for an image framegraph's output releases by its own audio clock
    (``pipelines.av_sync``). A destination the output does not know is ignored, as pipecat does.
    """
    sender = output._media_senders.get(image.transport_destination)
    if sender is not None:
        await sender._set_video_image(image)


def io_params(transport_io: BaseInputTransport | BaseOutputTransport) -> Any:
    """The ``TransportParams`` an input or output transport was built with."""
    return transport_io._params


def drop_webrtc_track_chunks(output: BaseOutputTransport) -> int:
    """Drops the 10 ms chunks a SmallWebRTC output's audio track still queues; returns how many.

    Each chunk carries an optional future its writer awaits: it is resolved so
    the writer moves on.
    """
    track = output._client._audio_output_track
    queue = track._chunk_queue if track is not None else None
    dropped = 0
    while queue:
        _, future = queue.popleft()
        dropped += 1
        if future and not future.done():
            future.set_result(True)
    return dropped


def prompt_audio_receivers(connection: Any, prefetch: int) -> int:
    """Lets the audio receivers of a SmallWebRTC connection hand on each packet ``prefetch`` packets later.

    aiortc's audio receiver holds 4 packets (80 ms of Opus) before it decodes
    the first, so every word reaches VAD 80 ms after it arrived: that much
    later a turn ends, and a barge-in interrupts. It must be set before the
    first packet arrives (between the answer and ICE connecting): a buffer
    already holding packets keeps its delay. Returns how many receivers were
    set. aiortc, not pipecat, but reached here like pipecat's internals.
    """
    receivers = [r for r in connection.pc.getReceivers() if r.track is not None and r.track.kind == "audio"]
    for receiver in receivers:
        getattr(receiver, _AIORTC_JITTER_BUFFER)._prefetch = prefetch
    return len(receivers)


# -- naming -----------------------------------------------------------------------------------


def rename_processor(processor: FrameProcessor, name: str) -> None:
    """Gives ``processor`` a name after construction (some pipecat processors take no ``name`` argument)."""
    processor._name = name
    processor._metrics.set_processor_name(name)


# -- the user aggregator's turn strategies ----------------------------------------------------


def user_turn_strategies(user_aggregator: LLMUserAggregator) -> UserTurnStrategies:
    """The strategies ``user_aggregator``'s turn controller runs (through the controller's public property)."""
    return user_aggregator._user_turn_controller.user_turn_strategies


def set_user_turn_strategies(user_aggregator: LLMUserAggregator, strategies: UserTurnStrategies) -> None:
    """Marks ``strategies`` as the user's own, so a service's recommended strategies do not replace them."""
    user_aggregator._params.user_turn_strategies = strategies


# -- analyzers around a shared model ----------------------------------------------------------


def init_silero_with_session(analyzer: VADAnalyzer, params: VADParams | None, session: Any) -> None:
    """Initializes a ``SileroVADAnalyzer`` subclass around an ONNX ``session`` it does not own.

    ``SileroVADAnalyzer.__init__`` would load a session of its own, so the
    base ``VADAnalyzer`` is initialized and Silero's per-stream model wrapper
    and counters are set up as its ``__init__`` would.
    """
    from pipecat.audio.vad.silero import SileroOnnxModel

    VADAnalyzer.__init__(analyzer, params=params)
    model = SileroOnnxModel.__new__(SileroOnnxModel)
    model.session = session
    model.sample_rates = [8000, 16000]
    model.reset_states()
    analyzer._model = model
    analyzer._windows_since_reset = 0
    analyzer._low_confidence_windows = 0


def init_smart_turn_with_session(analyzer: BaseSmartTurn, params: SmartTurnParams | None, session: Any) -> None:
    """Initializes a ``LocalSmartTurnAnalyzerV3`` subclass around an ONNX ``session`` it does not own.

    ``LocalSmartTurnAnalyzerV3.__init__`` would load a session of its own, so
    the base ``BaseSmartTurn`` is initialized and the session set as its ``__init__`` would.
    """
    BaseSmartTurn.__init__(analyzer, params=params)
    analyzer._log_data = False
    analyzer._session = session


def vad_analyzer(user_aggregator: LLMUserAggregator) -> VADAnalyzer | None:
    """The VAD analyzer ``user_aggregator`` runs, or None."""
    controller = user_aggregator._vad_controller
    return controller._vad_analyzer if controller is not None else None


def onnx_session(analyzer: Any) -> Any:
    """The ONNX session a Silero VAD or local Smart Turn analyzer runs."""
    model = getattr(analyzer, "_model", None)
    return model.session if model is not None else analyzer._session


def turn_analyzer(stop_strategy: Any) -> Any:
    """The turn analyzer a ``TurnAnalyzerUserTurnStopStrategy`` asks."""
    return stop_strategy._turn_analyzer
