"""End of the user's turn: Smart Turn v3 shared per process, and a transcript-aware policy.

pipecat's default stop strategy asks Smart Turn whether the user finished
when VAD reports silence; a verdict of "incomplete" then waits for Smart
Turn's silence timeout (3 s by default) unless the user speaks again. On our
human clips that timeout is what makes the slow turns slow, and it fires on
sentences that are plainly finished ("he might even have been made amiable
himself"); and the verdict (about 70 ms) sits on the critical path of every
turn. ``TranscriptAwareTurnStopStrategy`` ends the turn as soon as the STT's
finalized transcript arrives, unless it ends on a word that cannot end a
sentence ("and", "the", "to"...): those turns wait for Smart Turn, so a user
who pauses mid-sentence is not cut off.
"""

import asyncio
import time
from functools import cache

from pipecat.audio.turn.base_turn_analyzer import EndOfTurnState
from pipecat.audio.turn.smart_turn.base_smart_turn import SmartTurnParams
from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3
from pipecat.frames.frames import VADUserStoppedSpeakingFrame
from pipecat.turns.user_stop import TurnAnalyzerUserTurnStopStrategy

from pipelines.pipecat_compat import init_smart_turn_with_session, turn_analyzer

#: Words after which an English utterance is not over: articles, conjunctions,
#: possessives, subject pronouns, the commonest prepositions and hesitations.
#: Kept short on purpose: a word that can end a sentence ("it", "so", "can")
#: must not be here, or finished turns would wait.
DANGLING_WORDS = frozenset(
    """
    a an the and or but nor because if unless although though whether
    to of for with from into onto
    my your his her our their its i we they he she
    um uh er erm
    """.split()
)


def looks_complete(transcript: str) -> bool:
    """Whether a transcript reads as a finished utterance (it does not end on a dangling word)."""
    words = transcript.lower().split()
    return bool(words) and words[-1].strip(".,!?") not in DANGLING_WORDS


@cache
def shared_smart_turn_session():
    from importlib.resources import files

    import onnxruntime as ort

    path = str(files("pipecat.audio.turn.smart_turn.data").joinpath("smart-turn-v3.2-cpu.onnx"))
    options = ort.SessionOptions()
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, sess_options=options)


class SharedSmartTurnAnalyzer(LocalSmartTurnAnalyzerV3):
    """Smart Turn v3 whose ONNX session (about 28 MiB) is shared by every agent of the process.

    The analyzer's per-stream state (audio buffer, speech timing) stays per
    agent; only the stateless, thread-safe session is shared.
    ``LocalSmartTurnAnalyzerV3.__init__`` would load a private session, so the
    seam (``pipelines.pipecat_compat``) initializes it around the shared one.
    """

    def __init__(self, *, params: SmartTurnParams | None = None):
        """Initialize the analyzer around the shared session."""
        init_smart_turn_with_session(self, params, shared_smart_turn_session())


class TranscriptAwareTurnStopStrategy(TurnAnalyzerUserTurnStopStrategy):
    """Ends the turn on a plainly complete finalized transcript; asks Smart Turn otherwise.

    The parent awaits Smart Turn (about 70 ms of CPU, more when many agents
    finish at once) inside the user aggregator each time VAD reports
    silence, so the transcript that arrives meanwhile waits behind it. Here a
    finalized transcript that does not end on a dangling word ends the turn
    as soon as it arrives, and Smart Turn is not asked at all (its verdict
    could only confirm the end, or overrule it after seconds): when VAD
    reports silence, the strategy waits for the finalized transcript (until
    the STT's p99 deadline, ``ttfs_p99_latency`` after the speech's end), and
    asks Smart Turn only for a dangling transcript or none. Smart Turn was
    the largest CPU cost of a talking session after the VAD (bench/load.py
    under py-spy: 0.13 cores for 12 sessions), mostly spent confirming what
    the transcript had said. On "incomplete" the turn waits for Smart Turn's
    silence timeout. Speech resuming cancels a pending verdict, as it
    cancels the parent's.
    """

    def __init__(self, **kwargs):
        """Initialize the strategy (arguments as ``TurnAnalyzerUserTurnStopStrategy``)."""
        super().__init__(**kwargs)
        self._verdict_task: asyncio.Task | None = None
        self._finalized = asyncio.Event()

    async def _handle_vad_user_stopped_speaking(self, frame: VADUserStoppedSpeakingFrame):
        self._vad_user_speaking = False
        self._stop_secs = frame.stop_secs
        self._vad_stopped = True
        self._verdict_task = self.task_manager.create_task(self._await_verdict(frame), f"{self}::verdict")

    async def _handle_transcription(self, frame):
        if frame.finalized:
            self._finalized.set()
        await super()._handle_transcription(frame)

    async def _await_verdict(self, frame: VADUserStoppedSpeakingFrame):
        """The finalized transcript or Smart Turn's verdict, then the parent's STT safety net and trigger check."""
        stt_deadline = frame.timestamp - frame.stop_secs + self._stt_timeout
        if not self._transcript_finalized:
            self._finalized.clear()
            try:
                await asyncio.wait_for(self._finalized.wait(), max(0.0, stt_deadline - time.time()))
            except TimeoutError:
                pass
        if self._transcript_finalized and looks_complete(self._text):
            self._verdict_task = None
            await self._maybe_trigger_user_turn_stopped()  # ends the turn, unless it has already ended
            return
        state, prediction = await turn_analyzer(self).analyze_end_of_turn()
        self._verdict_task = None  # from here on, ending the turn must not cancel this task
        await self._handle_prediction_result(prediction)
        self._turn_complete = self._turn_complete or state == EndOfTurnState.COMPLETE
        self._timeout_task = self.task_manager.create_task(
            self._timeout_handler(max(0.0, stt_deadline - time.time())), f"{self}::_timeout_handler"
        )
        await self._maybe_trigger_user_turn_stopped()

    async def _cancel_verdict(self):
        if self._verdict_task:
            await self.task_manager.cancel_task(self._verdict_task)
            self._verdict_task = None

    async def _discard_pending_end_of_turn(self):
        await self._cancel_verdict()
        await super()._discard_pending_end_of_turn()

    async def cleanup(self):
        """Cancel a pending verdict along with the parent's timers."""
        await self._cancel_verdict()
        await super().cleanup()

    async def _maybe_trigger_user_turn_stopped(self):
        if (
            self._vad_stopped
            and not self._vad_user_speaking
            and self._transcript_finalized
            and looks_complete(self._text)
        ):
            self._turn_complete = True
        await super()._maybe_trigger_user_turn_stopped()
