"""The ``context`` block: the user and assistant context aggregators, with VAD and turn end.

The pipeline ids ``user_context`` and ``assistant_context`` name the two
halves of one pipecat ``LLMContextAggregatorPair`` sharing one ``LLMContext``.
The user half listens: Silero VAD runs inside it and its turn strategies
decide when the user started (interrupting the bot) and finished (running the
LLM). Place it after the STT (``[input, stt, user_context, llm, ...]``): VAD's
events travel upstream to the STT, transcripts downstream to the aggregator.
With ``interruptions.resume_after_secs`` the pair resumes a reply cut by a
false interruption (``pipelines.interruptions.resume``).
"""

from typing import Literal

from pydantic import Field, model_validator

from pipelines.errors import ConfigError, ConfigErrors
from pipelines.persona import render_persona
from pipelines.registry import BuildContext, TypeInfo
from pipelines.spec import Params

#: Sample rates Silero VAD accepts.
VAD_SAMPLE_RATES = (8000, 16000)


class VADSettings(Params):
    """Silero VAD (bundled with pipecat), tuned for barge-in.

    pipecat's defaults (start 0.2 s, min volume 0.6) start the user's turn,
    and so interrupt the bot, about 290 ms after the speech onset on our
    human clips, mostly waiting for the smoothed volume to climb; these
    defaults take about 100 ms (bench/barge_in.py: start_secs 0.15 took 160-180
    ms, 0.1 about 100 ms, 0.064 about 70 ms). Silero decides every 32 ms:
    0.1 s is three windows of speech. What keeps a noise burst or a cough
    from interrupting is Silero's confidence (under 0.1 for both), not the
    window; the window keeps a single speech-like click from doing it.
    """

    confidence: float = Field(0.7, gt=0, le=1, description="voice probability that counts as speech")
    start_secs: float = Field(0.1, ge=0, le=5, description="speech needed before the user is speaking (and interrupts)")
    stop_secs: float = Field(0.2, ge=0, le=10, description="silence needed before the user stopped speaking")
    min_volume: float = Field(0.4, ge=0, le=1, description="smoothed volume below which nothing is speech")


class TurnSettings(Params):
    """When the user's turn starts and ends."""

    start: list[Literal["vad", "transcription"]] = Field(
        default_factory=lambda: ["vad", "transcription"], min_length=1,
        description="what starts a user turn: VAD's speech start, or a transcript",
    )
    stop: Literal["transcript_aware", "smart_turn", "speech_timeout"] = Field(
        "transcript_aware",
        description="transcript_aware: Smart Turn v3, overruled by a plainly complete transcript; "
        "smart_turn: Smart Turn v3 alone; speech_timeout: a fixed silence",
    )
    incomplete_timeout: float = Field(
        2.0, gt=0, le=60, description="smart turn: silence after which a turn judged incomplete ends anyway"
    )
    speech_timeout: float = Field(0.6, ge=0, le=60, description="speech_timeout: silence that ends the turn")
    stop_timeout: float = Field(5.0, gt=0, le=60, description="longest wait for a turn end after the user went quiet")


class LLMContextParams(Params):
    system_prompt: str = ""
    vad: VADSettings | None = Field(
        default_factory=VADSettings, description="Silero VAD in the user aggregator; null when the transport or STT sends its own"
    )
    turn: TurnSettings = Field(default_factory=TurnSettings)
    variables: dict[str, str] = Field(
        default_factory=dict, description="persona: values for the {placeholders} in system_prompt"
    )

    @model_validator(mode="after")
    def _persona_fills(self):
        if self.variables:
            render_persona(self.system_prompt, self.variables)
        return self

    @property
    def prompt(self) -> str:
        """The system prompt with the persona's variables filled in."""
        return render_persona(self.system_prompt, self.variables) if self.variables else self.system_prompt


def _turn_strategies(turn: TurnSettings, interruptions, turn_completion: bool = False, resume=None):
    """pipecat turn strategies for the YAML's ``turn`` block and the agent's interruption settings.

    ``resume`` (``pipelines.interruptions.resume.ResumeHooks``): its ``EmptyTurnEnd`` joins the stop
    strategies, its ``BackchannelGate`` goes first among the start strategies.

    With ``turn_completion`` (``conversation.turn_completion``), pipecat's
    ``FilterIncompleteUserTurnStrategies``: the same detectors only ask the
    LLM, whose turn-completion marker finalizes the turn.
    """
    from pipecat.audio.turn.smart_turn.base_smart_turn import SmartTurnParams
    from pipecat.turns.user_stop import SpeechTimeoutUserTurnStopStrategy, TurnAnalyzerUserTurnStopStrategy
    from pipecat.turns.user_turn_strategies import FilterIncompleteUserTurnStrategies, UserTurnStrategies

    from pipelines.interruptions.policy import start_strategies
    from processors.turn import SharedSmartTurnAnalyzer, TranscriptAwareTurnStopStrategy

    start = start_strategies(turn.start, interruptions)
    if turn.stop == "speech_timeout":
        stop = SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=turn.speech_timeout)
    else:
        strategy = TranscriptAwareTurnStopStrategy if turn.stop == "transcript_aware" else TurnAnalyzerUserTurnStopStrategy
        analyzer = SharedSmartTurnAnalyzer(params=SmartTurnParams(stop_secs=turn.incomplete_timeout))
        stop = strategy(turn_analyzer=analyzer)
    strategies = FilterIncompleteUserTurnStrategies if turn_completion else UserTurnStrategies
    chosen = strategies(start=start, stop=[stop])
    if resume is not None:  # after pipecat's wrapping (turn_completion defers the others): they act themselves
        chosen.stop = [*chosen.stop, resume.turn_end]
        chosen.start = [resume.gate, *chosen.start]
    return chosen


def prewarm_llm_context(params: LLMContextParams, ctx: BuildContext) -> None:
    """Loads the ONNX sessions every agent's context shares (Silero VAD, Smart Turn)."""
    if params.vad is not None:
        from processors.vad import shared_model_session

        shared_model_session()
    if params.turn.stop != "speech_timeout":
        from processors.turn import shared_smart_turn_session

        shared_smart_turn_session()


def make_llm_context(params: LLMContextParams, ctx: BuildContext):
    """Creates the LLM context and its aggregator pair, VAD and turn strategies included (``BuiltAgent.llm_context`` is the context)."""
    from pipecat.audio.vad.vad_analyzer import VADParams
    from pipecat.processors.aggregators.llm_context import LLMContext
    from pipecat.processors.aggregators.llm_response_universal import (
        LLMContextAggregatorPair,
        LLMUserAggregatorParams,
    )

    from pipelines.interruptions.tool_calls import CancelledCallsSettle
    from processors.vad import SharedSileroVADAnalyzer

    vad_analyzer = None
    if params.vad is not None:
        if ctx.audio_in_sample_rate not in VAD_SAMPLE_RATES:
            raise ConfigErrors([ConfigError(
                None, "context.vad",
                f"Silero VAD needs the transport's audio_in_sample_rate to be 8000 or 16000, "
                f"not {ctx.audio_in_sample_rate}",
            )])
        vad_analyzer = SharedSileroVADAnalyzer(params=VADParams(**params.vad.model_dump()))
    hooks = None
    if ctx.spec.interruptions.resume_after_secs is not None:
        from pipelines.interruptions.resume import ResumeHooks

        hooks = ResumeHooks(LLMUserAggregatorParams().empty_user_turn)
    user_params = LLMUserAggregatorParams(
        vad_analyzer=vad_analyzer,
        user_turn_strategies=_turn_strategies(params.turn, ctx.spec.interruptions, ctx.spec.conversation.turn_completion,
                                              hooks),
        user_turn_stop_timeout=params.turn.stop_timeout,
    )
    if hooks is not None:  # pipecat's recovery of an empty interrupting turn, except when the bot resumes instead
        user_params.empty_user_turn = hooks.recovery
    messages = [{"role": "system", "content": params.prompt}] if params.system_prompt else []
    context = LLMContext(messages=messages)
    pair = LLMContextAggregatorPair(context, user_params=user_params)
    CancelledCallsSettle(pair.assistant())
    if hooks is not None:
        from pipelines.interruptions.resume import FalseInterruptionResume

        FalseInterruptionResume(ctx.spec.interruptions, pair.user(), pair.assistant(), context, hooks)
    return pair


TYPES = [
    TypeInfo("context", "llm_context", LLMContextParams, make_llm_context,
             "LLM context with user/assistant aggregators, Silero VAD and Smart Turn", prewarm=prewarm_llm_context),
]
