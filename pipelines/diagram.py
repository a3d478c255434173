"""Pictures of an agent's graph: Mermaid text and Graphviz DOT (rendered to PNG/SVG by ``dot``).

Processor ids and the agent's name are whatever the YAML says, so they never
go into either language raw: nodes get generated ids (``n0``, ``n1``...), and
labels are written as Mermaid entity codes or quoted DOT strings.
"""

import re
import shutil
import subprocess
from pathlib import Path

from pipelines.errors import escape
from pipelines.spec import Parallel, Step
from pipelines.validate import Agent

_MERMAID_SAFE = re.compile(r"[A-Za-z0-9 _.,:()-]")


def _mermaid_text(text: str) -> str:
    """``text`` for inside a quoted Mermaid label: every other character as a ``#code;`` entity."""
    return "".join(c if _MERMAID_SAFE.fullmatch(c) else f"#{ord(c)};" for c in text)


def _dot_string(text: str) -> str:
    """``text`` as a quoted DOT string: control characters shown escaped, quotes and backslashes escaped."""
    return '"' + escape(text).replace("\\", "\\\\").replace('"', '\\"') + '"'
class _Graph:
    """Nodes and edges of a series-parallel pipeline."""

    def __init__(self, agent: Agent):
        self.labels: dict[str | tuple, str] = {}
        self.edges: list[tuple[str | tuple, str | tuple]] = []
        self._joins = 0
        self.agent = agent
        self._chain(agent.steps, [])

    def _label(self, pid: str) -> str:
        if pid in ("input", "output"):
            return f"{pid} ({self.agent.transport.type.name})"
        if pid in self.agent.processors:
            return f"{pid} ({self.agent.processors[pid].type.name})"
        return pid

    def _chain(self, steps: list[Step], tails: list[str]) -> list[str]:
        for step in steps:
            if isinstance(step, Parallel):
                ends: list[str] = []
                for branch in step.branches:
                    ends.extend(self._chain(branch, tails) if branch else tails)
                self._joins += 1
                join = ("join", self._joins)  # not a string: no processor id can be mistaken for it
                self.labels[join] = "join"
                self.edges.extend((end, join) for end in dict.fromkeys(ends))
                tails = [join]
            else:
                self.labels[step] = self._label(step)
                self.edges.extend((t, step) for t in tails)
                tails = [step]
        return tails


def mermaid(agent: Agent) -> str:
    """The graph as a Mermaid flowchart (paste into any Mermaid viewer)."""
    graph = _Graph(agent)
    ids = {node: f"n{i}" for i, node in enumerate(graph.labels)}
    lines = ["flowchart LR"]
    for node, label in graph.labels.items():
        shape = "((join))" if isinstance(node, tuple) else f'["{_mermaid_text(label)}"]'
        lines.append(f"    {ids[node]}{shape}")
    lines.extend(f"    {ids[a]} --> {ids[b]}" for a, b in graph.edges)
    return "\n".join(lines) + "\n"


def dot(agent: Agent) -> str:
    """The graph in Graphviz DOT."""
    graph = _Graph(agent)
    ids = {node: f"n{i}" for i, node in enumerate(graph.labels)}
    lines = [f"digraph {_dot_string(agent.spec.name)} {{", "  rankdir=LR;", "  node [shape=box, style=rounded];"]
    for node, label in graph.labels.items():
        shape = ", shape=point" if isinstance(node, tuple) else ""
        lines.append(f"  {ids[node]} [label={_dot_string(label)}{shape}];")
    lines.extend(f"  {ids[a]} -> {ids[b]};" for a, b in graph.edges)
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(agent: Agent, out: Path) -> None:
    """Writes a PNG or SVG picture (by ``out``'s suffix) with Graphviz's ``dot``.

    Raises:
        RuntimeError: when ``dot`` is missing or fails.
    """
    fmt = out.suffix.lstrip(".").lower()
    if fmt not in ("png", "svg"):
        raise RuntimeError(f"{out}: picture format must be .png or .svg")
    exe = shutil.which("dot")
    if exe is None:
        raise RuntimeError("Graphviz 'dot' is not installed (apt-get install graphviz); without --out it prints Mermaid text")
    result = subprocess.run([exe, f"-T{fmt}", "-o", str(out)], input=dot(agent), text=True, capture_output=True)
    if result.returncode != 0:
        raise RuntimeError(f"dot failed: {result.stderr.strip()}")
