"""The agent spec: pydantic models for what a YAML agent declares.

Structure is checked here; each processor's, transport's and context's own
params are checked against the model its registered type names (see
``pipelines.validate``).
"""

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, model_validator

from pipelines.errors import escape
from pipelines.sessions.users import USER_ID

#: Pipeline ids that name the transport's two ends.
INPUT, OUTPUT = "input", "output"
#: Pipeline ids that name the two halves of the context block.
USER_CONTEXT, ASSISTANT_CONTEXT = "user_context", "assistant_context"
TRANSPORT_IDS = (INPUT, OUTPUT)
CONTEXT_IDS = (USER_CONTEXT, ASSISTANT_CONTEXT)
RESERVED_IDS = TRANSPORT_IDS + CONTEXT_IDS


class Params(BaseModel):
    """Base of every type's params: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


def _existing_file(value: str | None, info: ValidationInfo) -> str | None:
    """Checks a path param names a readable file, relative to the config's folder.

    The folder comes in the validation context (``config_dir``); a config
    given as text with no file behind it has none, and its paths are checked
    when the agent is built.
    """
    config_dir = (info.context or {}).get("config_dir")
    if value and config_dir is not None:
        path = Path(config_dir) / value
        if not path.is_file():
            raise ValueError(f"cannot read {path}: no such file")
    return value


def _printable(value: str) -> str:
    if value != escape(value):
        raise ValueError(f"'{value}' holds control characters; names are printed to terminals and logs")
    return value


#: A name printed to terminals and logs (the agent's, a processor's id): no control characters.
PrintableName = Annotated[str, Field(min_length=1), AfterValidator(_printable)]

#: A param naming a file that must exist (relative to the config's folder); empty means none.
ConfigFile = Annotated[str, AfterValidator(_existing_file)]


class TypedBlock(BaseModel):
    """A ``{type: NAME, ...params}`` block; params are checked by the type's model."""

    model_config = ConfigDict(extra="allow")

    type: str

    @property
    def params(self) -> dict[str, Any]:
        """The block's keys other than ``type``."""
        return dict(self.model_extra or {})


#: The context type used when the ``context`` block names none.
DEFAULT_CONTEXT_TYPE = "llm_context"


class ContextBlock(TypedBlock):
    """The ``context`` block; its type defaults to ``llm_context``."""

    type: str = DEFAULT_CONTEXT_TYPE


#: Words a listener says without taking the turn: an interruption that brings only these is false.
BACKCHANNEL_WORDS = ("uh-huh", "mm-hmm", "mhm", "hmm", "mm", "yeah", "yes", "yep", "okay", "ok", "right", "sure",
                     "alright")


class InterruptionSettings(Params):
    """When the user may interrupt the bot."""

    enabled: bool = True
    min_words: int = Field(0, ge=0, le=100, description="words the user must say before the bot is interrupted")
    min_speech_secs: float = Field(0.0, ge=0, le=10, description="seconds of user speech before the bot is interrupted")
    while_thinking: bool = Field(True, description="also interrupt while the LLM is generating, before the bot speaks")
    resume_after_secs: float | None = Field(
        None, gt=0, le=10,
        description="resume the cut reply from the word last heard when the user's speech brought no words "
        "(or only backchannel words) this many seconds after it stopped; null: never resume",
    )
    backchannel_words: list[str] = Field(
        default_factory=lambda: list(BACKCHANNEL_WORDS),
        description="words that do not make an interruption real (a transcript of only these resumes the bot)",
    )


class Utterance(Params):
    """Something the bot says: fixed ``text``, or what the LLM answers to an ``instruction``."""

    text: str = Field("", max_length=2000, description="say these words as they are")
    instruction: str = Field("", max_length=2000, description="ask the LLM to say something, with this instruction")

    @model_validator(mode="after")
    def _one_of_text_or_instruction(self) -> "Utterance":
        if bool(self.text.strip()) == bool(self.instruction.strip()):
            raise ValueError("give either text or instruction (one of them)")
        return self


class IdleCheckIn(Utterance):
    """What the bot does when the user falls silent."""

    after_secs: float = Field(..., gt=0, le=3600, description="seconds of user silence (after the bot spoke) before a check-in")
    end_after: int = Field(2, ge=1, le=100, description="end the session when the user stays silent after this many check-ins")


class ConversationSettings(Params):
    """How the bot behaves around the user's turns."""

    greeting: Utterance | None = Field(None, description="the bot's opening line when a participant connects")
    idle: IdleCheckIn | None = Field(None, description="check in on a silent user; end the session after end_after")
    turn_completion: bool = Field(
        False, description="pipecat's turn-completion markers: the LLM starts each reply with one, and a turn it "
        "judges incomplete stays open (an LLM that follows the instruction, e.g. openai; not scripted)"
    )


#: The four thresholds of a load signal: ELEVATED, DEGRADED, SHEDDING, SESSION_REJECT (null: never on this signal).
LevelThresholds = Annotated[list[float | None], Field(min_length=4, max_length=4)]


class BackpressureSettings(Params):
    """How the server running this agent measures its load and what each level does (docs/backpressure.md).

    A server of several agents measures with the first agent's thresholds; each
    agent's ``degraded`` and ``retry_after_secs`` apply to its own sessions.
    """

    enabled: bool = Field(True, description="measure the load and act on its level; false: only --max-sessions")
    loop_lag_ms: LevelThresholds = Field(
        [20, 50, 80, 120], description="event-loop lag (mean over window_secs) that enters each level")
    cpu_share: LevelThresholds = Field(
        [0.75, 0.9, 0.97, None], description="the process's CPU share (1.0: one core) that enters each level")
    reply_p95_secs: LevelThresholds = Field(
        [0.4, 0.55, 0.7, 0.8], description="p95 of VAD stop -> bot's first audio over reply_window_secs per level")
    late_chunk_share: LevelThresholds = Field(
        [0.005, 0.01, 0.02, 0.03], description="share of the bot's audio chunks that reached the listener after the "
        "audio before them had played (a gap), over window_secs, that enters each level")
    min_chunks: int = Field(50, ge=1, le=100_000, description="fewer audio chunks than this in window_secs: "
                            "late_chunk_share is not measured (too few to make a share)")
    window_secs: float = Field(3.0, gt=0, le=60, description="loop lag and CPU are averaged over this")
    reply_window_secs: float = Field(20.0, gt=0, le=600, description="replies this recent make the reply p95")
    rise_secs: float = Field(1.0, ge=0, le=60, description="a higher level is entered once measured this long")
    recover_secs: float = Field(8.0, ge=0, le=600, description="a level is left (one step down) once the "
                                "measurements stayed under recover_ratio of its thresholds this long")
    recover_ratio: float = Field(0.7, gt=0, le=1, description="how far under a threshold a signal must fall to recover")
    retry_after_secs: int = Field(10, ge=1, le=3600, description="the Retry-After of a new session refused at SESSION_REJECT")
    shed_to_others: bool = Field(True, description="at SHEDDING, a new session goes to another server that has room")
    degraded: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="processor params laid over the declared ones at "
        "DEGRADED or above, by processor id (e.g. {avatar: {output: poses}}): sessions started then are built "
        "with them; running sessions' processors that take params live (the avatar) switch, and back on recovery")

    @model_validator(mode="after")
    def _rising(self) -> "BackpressureSettings":
        for name in ("loop_lag_ms", "cpu_share", "reply_p95_secs", "late_chunk_share"):
            values = [v for v in getattr(self, name) if v is not None]
            if values != sorted(values):
                raise ValueError(f"{name}: the thresholds must not decrease (ELEVATED, DEGRADED, SHEDDING, SESSION_REJECT)")
        return self


class MemoryField(Params):
    """One field of a user's memory: a list of texts, a counter, counts by item, or a text."""

    type: Literal["list", "counter", "counts", "text"]
    description: str = Field("", max_length=500, description="what the field holds, for the LLM's remember tool")
    pool: list[str] = Field(default_factory=list, max_length=1000,
                            description="a list's candidates: {memory_next_FIELD} is the first not yet in it")


#: A memory field name: what templates ({name}) and the remember tool's ``field`` argument use.
FieldName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]


class MemorySettings(Params):
    """What the agent remembers of each user across sessions (docs/users.md)."""

    fields: dict[FieldName, MemoryField] = Field(min_length=1, max_length=50)
    template: str = Field("", max_length=4000, description="{field} placeholders: the memory as the LLM reads it")
    into: Literal["system_prompt", "message"] = Field(
        "system_prompt", description="system_prompt: appended to the system prompt; message: a system message of "
        "its own at the session's start"
    )

    @model_validator(mode="after")
    def _template_names_fields(self) -> "MemorySettings":
        import string

        for _, name, _, _ in string.Formatter().parse(self.template):
            if name is not None and name not in self.fields:
                raise ValueError(f"template: '{{{name}}}' names no field ({', '.join(sorted(self.fields))})")
        return self


class UsageSettings(Params):
    """The ``usage:`` block of an agent: optional prices."""

    prices: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="by 'provider/model' (or 'provider'): price per unit of each metric (prompt_tokens, "
        "completion_tokens, characters, audio_s), in any one currency",
    )


class Limits(Params):
    """Most a period may use; a limit left out is no limit."""

    tokens: float | None = Field(None, gt=0, description="LLM tokens, prompt and completion together")
    characters: float | None = Field(None, gt=0, description="characters spoken by the TTS")
    audio_s: float | None = Field(None, gt=0, description="seconds of input audio the STT heard")
    cost: float | None = Field(None, gt=0, description="cost, from usage.prices")


class Budget(Params):
    """Limits of one session, and of one user a day and a month."""

    per_session: Limits | None = None
    per_day: Limits | None = Field(None, description="per user, UTC day; over it, POST /sessions answers 429")
    per_month: Limits | None = Field(None, description="per user, UTC month; over it, POST /sessions answers 429")


class BudgetSettings(Budget):
    """How much one session, and one user a day or a month, may use (docs/users.md); ``users`` overrides per user."""

    say: str = Field("We have reached the limit for now. Goodbye!", min_length=1, max_length=500,
                     description="what the bot says before it ends a session over its budget")
    users: dict[Annotated[str, Field(pattern=USER_ID.pattern)], Budget] = Field(
        default_factory=dict, description="by user id: limits that replace the agent's, period by period"
    )

    def for_user(self, user: str | None) -> Budget:
        """The limits that apply to ``user``: their own where given, the agent's for the other periods."""
        own = self.users.get(user) if user is not None else None
        if own is None:
            return self
        return Budget(**{p: getattr(own, p) or getattr(self, p) for p in ("per_session", "per_day", "per_month")})


class AgentSpec(BaseModel):
    """A whole agent as written in YAML."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1]
    name: PrintableName
    description: str = ""
    transport: TypedBlock
    context: ContextBlock | None = None
    processors: dict[PrintableName, TypedBlock] = Field(default_factory=dict)
    pipeline: list[Any] = Field(min_length=1)
    interruptions: InterruptionSettings = Field(default_factory=InterruptionSettings)
    conversation: ConversationSettings = Field(default_factory=ConversationSettings)
    backpressure: BackpressureSettings = Field(default_factory=BackpressureSettings)
    memory: MemorySettings | None = Field(None, description="what the agent remembers of each user (docs/users.md)")
    usage: UsageSettings = Field(default_factory=UsageSettings, description="prices of what sessions use (docs/users.md)")
    budget: BudgetSettings | None = Field(None, description="how much a session and a user may use (docs/users.md)")


class Parallel(BaseModel):
    """A ``parallel:`` step: branches that each see every frame."""

    branches: list[list["Step"]]


Step = str | Parallel
Parallel.model_rebuild()


def step_ids(steps: list[Step]) -> list[str]:
    """Every processor id in a (nested) list of steps, in order."""
    ids: list[str] = []
    for step in steps:
        if isinstance(step, Parallel):
            for branch in step.branches:
                ids.extend(step_ids(branch))
        else:
            ids.append(step)
    return ids
