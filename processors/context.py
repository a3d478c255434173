"""The ``context`` block: the user and assistant context aggregators.

The pipeline ids ``user_context`` and ``assistant_context`` name the two
halves of one pipecat ``LLMContextAggregatorPair`` sharing one ``LLMContext``.
"""

from pipelines.registry import TypeInfo
from pipelines.spec import Params


class LLMContextParams(Params):
    system_prompt: str = ""


def build_context(params: LLMContextParams, ctx):
    """Creates the shared LLM context and its aggregator pair."""
    from pipecat.processors.aggregators.llm_context import LLMContext
    from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair

    messages = [{"role": "system", "content": params.system_prompt}] if params.system_prompt else []
    context = LLMContext(messages=messages)
    ctx.shared["llm_context"] = context
    return LLMContextAggregatorPair(context)


TYPES = [
    TypeInfo("context", "llm_context", LLMContextParams, build_context, "LLM context with user/assistant aggregators"),
]
