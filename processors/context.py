"""The ``context`` block: the user and assistant context aggregators.

The pipeline ids ``user_context`` and ``assistant_context`` name the two
halves of one pipecat ``LLMContextAggregatorPair`` sharing one ``LLMContext``.
"""

from pydantic import Field, model_validator

from pipelines.registry import TypeInfo
from pipelines.spec import Params
from processors.llm.persona import render_persona


class LLMContextParams(Params):
    system_prompt: str = ""
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


def build_context(params: LLMContextParams, ctx):
    """Creates the shared LLM context and its aggregator pair."""
    from pipecat.processors.aggregators.llm_context import LLMContext
    from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair

    messages = [{"role": "system", "content": params.prompt}] if params.system_prompt else []
    context = LLMContext(messages=messages)
    ctx.shared["llm_context"] = context
    return LLMContextAggregatorPair(context)


TYPES = [
    TypeInfo("context", "llm_context", LLMContextParams, build_context, "LLM context with user/assistant aggregators"),
]
