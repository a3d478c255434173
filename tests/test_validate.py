"""Validation: every broken config reports its error class at its line and column."""

import re
from pathlib import Path

import pytest

from pipelines.errors import ConfigErrors
from pipelines.spec import Parallel
from pipelines.validate import load_agent, load_agent_text

BROKEN = sorted((Path(__file__).parent / "broken").glob("*.yaml"))
CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.stem)
def test_broken_config_reports_line_and_column(path, monkeypatch):
    monkeypatch.delenv("FRAMEGRAPH_TEST_UNSET_VAR", raising=False)
    expect = re.match(r"# expect: (\d+):(\d+) (.*)", path.read_text().splitlines()[0])
    line, column, message = expect.groups()
    with pytest.raises(ConfigErrors) as e:
        load_agent(path)
    first = str(e.value.errors[0])
    assert first.startswith(f"{path}:{line}:{column}: "), first
    assert message in first


def test_broken_directory_covers_every_error_class():
    names = {p.stem for p in BROKEN}
    assert {"malformed_yaml", "unknown_type", "unknown_param", "mistyped_param", "undeclared_id",
            "unused_processor", "no_input_start", "no_output_end", "empty_branches"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_configs_validate(path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "dummy")  # the cloud agent names it when unset (tests/test_newcomer.py)
    assert load_agent(path).spec.name


def test_all_problems_reported_at_once():
    text = """version: 1
name: many
transport: {type: synthtic}
processors:
  a: {type: passthrough, bogus: 1}
  b: {type: nothing}
pipeline: [input, a, c, output]
"""
    with pytest.raises(ConfigErrors) as e:
        load_agent_text(text, "many.yaml")
    messages = [str(err) for err in e.value.errors]
    assert any("many.yaml:3:" in m and "did you mean 'synthetic'" in m for m in messages)
    assert any("many.yaml:5:26" in m and "unknown key" in m for m in messages)
    assert any("many.yaml:6:" in m and "unknown processor type 'nothing'" in m for m in messages)
    assert any("'c' is not a declared processor" in m for m in messages)
    assert any("'b' is declared but never used" in m for m in messages)


def test_valid_agent_resolves_types_and_nested_parallel():
    agent = load_agent_text("""version: 1
name: ok
transport: {type: synthetic, audio_out_sample_rate: 16000}
processors:
  a: {type: passthrough, delay_ms: 2}
  b: {type: passthrough}
  c: {type: passthrough}
  d: {type: passthrough}
pipeline: [input, a, {parallel: [[b, {parallel: [[c], [d]]}], []]}, output]
""")
    assert agent.processors["a"].params.delay_ms == 2
    assert agent.transport.params.audio_out_sample_rate == 16000
    outer = agent.steps[2]
    assert isinstance(outer, Parallel) and outer.branches[1] == []
    assert isinstance(outer.branches[0][1], Parallel)


def test_processor_cannot_appear_twice_or_be_reserved():
    with pytest.raises(ConfigErrors) as e:
        load_agent_text("""version: 1
name: twice
transport: {type: synthetic}
processors:
  a: {type: passthrough}
  output: {type: passthrough}
pipeline: [input, a, a, output]
""")
    text = str(e.value)
    assert "'a' appears twice" in text
    assert "'output' is reserved" in text


def test_context_ids_need_no_declaration_and_may_sit_outside_the_ends():
    agent = load_agent_text("""version: 1
name: ctx
transport: {type: synthetic}
context: {type: llm_context, system_prompt: "Be brief."}
pipeline: [input, user_context, output, assistant_context]
""")
    assert agent.context.params.system_prompt == "Be brief."


def test_a_params_validator_message_keeps_its_names():
    with pytest.raises(ConfigErrors) as e:
        load_agent_text("""version: 1
name: f
transport: {type: synthetic}
processors:
  f: {type: filter, allow: [TextFrme]}
pipeline: [input, f, output]
""", "f.yaml")
    assert str(e.value) == "f.yaml:5:28: processors.f.allow: unknown frame type 'TextFrme' (did you mean 'TextFrame'?)"
