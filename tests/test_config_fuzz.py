"""Fuzzing the shipped configs: any mutant is a valid agent or clean file:line:column errors."""

import re
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.errors import ConfigErrors
from pipelines.validate import load_agent_text

CONFIGS = {p.name: p.read_text() for p in sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))}
LINE = re.compile(r"^[^\n]+:\d+:\d+: [^\n]*$")
#: What a careless edit or a hostile file puts in: YAML syntax, control characters, tags, anchors.
PIECES = ["\x00", "\x07", "\x1b[2J", "\t", "\n", " ", ":", "- ", "[", "]", "{", "}", "&a ", "*a", "<<: ", "!include ",
          "!!binary ", "!foo ", "${HOME}", "${", "'", '"', "\\", "#", "|", ">", "?", "2024-13-45", "1e999", "~", "\u202e"]


@st.composite
def mutants(draw):
    name = draw(st.sampled_from(sorted(CONFIGS)))
    text = CONFIGS[name]
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 8))
        piece = draw(st.one_of(st.sampled_from(PIECES), st.text(max_size=3)))
        text = text[:at] + piece + text[at + cut:]
    return name, text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutants())
def test_mutated_configs_fail_cleanly(mutant):
    name, text = mutant
    path = Path(__file__).parent.parent / "configs" / name  # includes and relative paths resolve as shipped
    try:
        load_agent_text(text, path)
    except ConfigErrors as e:
        assert e.errors
        for error in e.errors:
            assert LINE.match(str(error)), repr(str(error))
