"""``pipelines``' public surface: what plug-ins and tests may import, light to import, and what the examples use."""

import ast
import subprocess
import sys
from pathlib import Path

import pipelines

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = (ROOT / "tests" / "plugin_example", ROOT / "tests" / "transport_example")


def test_every_public_name_resolves():
    missing = [name for name in pipelines.__all__ if getattr(pipelines, name, None) is None]
    assert not missing, f"named in pipelines.__all__ but not importable: {missing}"


def test_importing_the_package_loads_no_pipecat():
    probe = "import sys, pipelines; from pipelines import TypeInfo, Params; print('pipecat' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False", out.stderr


def test_the_example_plug_ins_import_only_the_public_surface():
    """The worked examples are what a third party copies: they import ``pipelines`` and nothing under it."""
    private = []
    for path in (p for example in EXAMPLES for p in example.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            private += [f"{path.relative_to(ROOT)}:{node.lineno}: {n}" for n in names if n.startswith("pipelines.")]
    assert not private, "examples importing internals:\n" + "\n".join(private)
