"""End of the user's turn: Smart Turn v3 shared per process, and a transcript-aware policy.

pipecat's default stop strategy asks Smart Turn whether the user finished
when VAD reports silence; a verdict of "incomplete" then waits for Smart
Turn's silence timeout (3 s by default) unless the user speaks again. On our
human clips that timeout is what makes the slow turns slow, and it fires on
sentences that are plainly finished ("he might even have been made amiable
himself"). ``TranscriptAwareTurnStopStrategy`` lets the finalized transcript
overrule an "incomplete" verdict unless it ends on a word that cannot end a
sentence ("and", "the", "to"...): those turns still wait, so a user who
pauses mid-sentence is not cut off.
"""

from functools import cache

from pipecat.audio.turn.smart_turn.base_smart_turn import BaseSmartTurn, SmartTurnParams
from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3
from pipecat.turns.user_stop import TurnAnalyzerUserTurnStopStrategy

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
def _shared_smart_turn_session():
    import onnxruntime as ort
    from importlib.resources import files

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
    base class is initialized directly.
    """

    def __init__(self, *, params: SmartTurnParams | None = None):
        """Initialize the analyzer around the shared session."""
        BaseSmartTurn.__init__(self, params=params)
        self._log_data = False
        self._session = _shared_smart_turn_session()


class TranscriptAwareTurnStopStrategy(TurnAnalyzerUserTurnStopStrategy):
    """Smart Turn's verdict, overruled by a finalized transcript that is plainly complete.

    Every call of ``_maybe_trigger_user_turn_stopped`` made while VAD reports
    silence comes after Smart Turn's verdict for that silence (the parent
    analyzes before it first checks), so the override below only ever
    overrules a verdict that was actually given.
    """

    async def _maybe_trigger_user_turn_stopped(self):
        if (
            not self._turn_complete
            and self._vad_stopped
            and not self._vad_user_speaking
            and self._transcript_finalized
            and looks_complete(self._text)
        ):
            self._turn_complete = True
        await super()._maybe_trigger_user_turn_stopped()
