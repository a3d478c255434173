"""The builder: YAML to the same pipecat graph a hand-written program builds."""

from pathlib import Path

from pipecat.frames.frames import TextFrame
from pipecat.pipeline.parallel_pipeline import ParallelPipeline
from pipecat.pipeline.pipeline import Pipeline
from pipecat.processors.aggregators.llm_response_universal import LLMAssistantAggregator, LLMUserAggregator

from pipelines.builder import build_agent
from pipelines.testing import AgentHarness
from pipelines.validate import load_agent_text
from processors.basic import PassThrough
from transports.synthetic import SyntheticInput, SyntheticOutput

NESTED = """version: 1
name: nested
transport: {type: synthetic}
processors:
  a: {type: passthrough}
  b: {type: passthrough}
  c: {type: passthrough}
  d: {type: passthrough}
  e: {type: passthrough}
pipeline: [input, a, {parallel: [[b, {parallel: [[c], [d]]}], [e]]}, output]
"""


def _inner(pipeline: Pipeline):
    return pipeline.processors[1:-1]  # without pipecat's own source and sink


def test_linear_graph_is_a_plain_pipeline():
    built = build_agent(load_agent_text("""version: 1
name: linear
transport: {type: synthetic}
processors:
  a: {type: passthrough}
  b: {type: logger}
pipeline: [input, a, b, output]
"""))
    chain = _inner(built.pipeline)
    assert [p.name for p in chain] == ["input", "a", "b", "output"]
    assert isinstance(chain[0], SyntheticInput) and isinstance(chain[-1], SyntheticOutput)
    assert isinstance(chain[1], PassThrough)


def test_nested_parallel_becomes_nested_parallel_pipelines():
    built = build_agent(load_agent_text(NESTED))
    chain = _inner(built.pipeline)
    outer = chain[2]
    assert isinstance(outer, ParallelPipeline)
    first, second = outer.processors
    assert [p.name for p in _inner(first)][0] == "b"
    assert isinstance(_inner(first)[1], ParallelPipeline)
    assert [p.name for p in _inner(second)] == ["e"]


def test_context_pair_and_transport_rates():
    built = build_agent(load_agent_text("""version: 1
name: ctx
transport: {type: synthetic, audio_in_sample_rate: 8000, audio_out_sample_rate: 16000}
context: {system_prompt: "Be brief."}
pipeline: [input, user_context, output, assistant_context]
"""))
    assert isinstance(built.processors["user_context"], LLMUserAggregator)
    assert isinstance(built.processors["assistant_context"], LLMAssistantAggregator)
    assert built.llm_context.get_messages()[0]["content"] == "Be brief."
    assert (built.params.audio_in_sample_rate, built.params.audio_out_sample_rate) == (8000, 16000)


async def test_nested_graph_delivers_each_frame_once_and_branch_frames_reach_output():
    async with AgentHarness.from_text(NESTED) as h:
        out = h.probe("output")
        c, e = h.probe("c"), h.probe("e")
        await h.inject(TextFrame("hello"))
        await out.wait_for(TextFrame, timeout=5)
        await c.wait_for(TextFrame, timeout=5)
        await e.wait_for(TextFrame, timeout=5)
        await h.inject(TextFrame("branch-made"), at="d")
        await out.wait_for(TextFrame, where=lambda f: f.text == "branch-made", timeout=5)
    texts = [f.text for f in out.of_type(TextFrame)]
    assert texts == ["hello", "branch-made"]


async def test_filter_drops_unlisted_frames():
    async with AgentHarness.from_text("""version: 1
name: filtered
transport: {type: synthetic}
processors:
  only_text: {type: filter, allow: [TranscriptionFrame]}
pipeline: [input, only_text, output]
""") as h:
        out = h.probe("only_text")
        from pipecat.frames.frames import TranscriptionFrame
        await h.inject(TextFrame("dropped"))
        await h.inject(TranscriptionFrame("kept", "user", "t0"))
        await out.wait_for(TranscriptionFrame, where=lambda f: f.text == "kept")
    assert [f.text for f in out.of_type(TextFrame)] == ["kept"]


def test_prewarm_calls_each_components_hook_with_its_build_context():
    """``TypeInfo.prewarm`` is how the server's workers load shared models: called once per component that has one."""
    from pipelines.builder import prewarm_agent
    from pipelines.overrides import load_agent_with
    from processors.turn import shared_smart_turn_session
    from processors.vad import shared_model_session

    shared_model_session.cache_clear()
    shared_smart_turn_session.cache_clear()
    agent = load_agent_with(str(Path(__file__).resolve().parents[1] / "configs" / "assistant.yaml"), [])
    assert prewarm_agent(agent) == ["context", "stt"]  # the others (file transport, scripted LLM, espeak) share nothing
    assert shared_model_session.cache_info().currsize == 1 and shared_smart_turn_session.cache_info().currsize == 1
