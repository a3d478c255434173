"""``framegraph graph`` with hostile ids: nothing the YAML says can break out of a label."""

import json
import re
import subprocess

import pytest

from pipelines import diagram
from pipelines.validate import load_agent_text

HOSTILE = ['a"]; click n0 call alert(1)%%', "x --> y", "<b>bold</b>", 'quote"\\back', "%%{init: {'theme': 'dark'}}%%", "}; digraph {"]
#: JSON strings are YAML double-quoted scalars: the ids reach the loader exactly as written above.
NAME = 'evil" {'
TEXT = f"version: 1\nname: {json.dumps(NAME)}\ntransport: {{type: synthetic}}\nprocessors:\n" + "".join(
    f"  {json.dumps(pid)}: {{type: passthrough}}\n" for pid in HOSTILE) + "pipeline:\n  - input\n  - parallel:\n" + "".join(
    f"      - [{json.dumps(pid)}]\n" for pid in HOSTILE) + "  - output\n"


@pytest.fixture
def agent():
    return load_agent_text(TEXT)


def test_mermaid_lines_keep_their_shape(agent):
    lines = diagram.mermaid(agent).splitlines()
    assert lines[0] == "flowchart LR"
    shapes = re.compile(r'^    n\d+(\["[A-Za-z0-9 _.,:()#;-]*"\]|\(\(join\)\)| --> n\d+)$')
    assert all(shapes.match(line) for line in lines[1:]), lines
    assert len(lines) == 1 + (len(HOSTILE) + 3) + 2 * len(HOSTILE) + 1  # nodes, then edges in and out of the block


def test_dot_parses_with_one_node_per_id(agent):
    text = diagram.dot(agent)
    plain = subprocess.run(["dot", "-Tplain"], input=text, text=True, capture_output=True, check=True).stdout
    assert sum(1 for line in plain.splitlines() if line.startswith("node ")) == len(HOSTILE) + 3
    assert plain.count("\nedge ") == 2 * len(HOSTILE) + 1
