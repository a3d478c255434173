"""Pictures of an agent's graph: Mermaid text and Graphviz DOT (rendered to PNG/SVG by ``dot``)."""

import shutil
import subprocess
from pathlib import Path

from pipelines.spec import Parallel, Step
from pipelines.validate import Agent


class _Graph:
    """Nodes and edges of a series-parallel pipeline."""

    def __init__(self, agent: Agent):
        self.labels: dict[str, str] = {}
        self.edges: list[tuple[str, str]] = []
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
                join = f"join{self._joins}"
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
    lines = ["flowchart LR"]
    for node, label in graph.labels.items():
        shape = f"(({label}))" if label == "join" else f'["{label}"]'
        lines.append(f"    {node}{shape}")
    lines.extend(f"    {a} --> {b}" for a, b in graph.edges)
    return "\n".join(lines) + "\n"


def dot(agent: Agent) -> str:
    """The graph in Graphviz DOT."""
    graph = _Graph(agent)
    lines = [f'digraph "{agent.spec.name}" {{', "  rankdir=LR;", "  node [shape=box, style=rounded];"]
    for node, label in graph.labels.items():
        shape = ", shape=point" if label == "join" else ""
        lines.append(f'  "{node}" [label="{label}"{shape}];')
    lines.extend(f'  "{a}" -> "{b}";' for a, b in graph.edges)
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
