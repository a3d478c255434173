"""A third-party transport package (tests/transport_example) installed through the ``framegraph.types`` entry point.

The worked example of the transport extension point, as tests/plugin_example
is of the processor one: pip installs it (``plugin_kit.install``), the
registry finds ``text_lines`` beside the built-ins, a config using it
validates (a missing input file is reported at its line), and ``framegraph
run`` runs an agent on it in a fresh process: the lines it reads go through
the agent's pipeline and come out in the file it writes.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from plugin_kit import forget, install

from pipelines.errors import ConfigErrors
from pipelines.registry import load_registry
from pipelines.validate import load_agent_text

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = Path(__file__).parent / "transport_example"
CONFIG = """\
version: 1
name: lines
transport: {type: text_lines, input: said.txt, output: heard.txt}
processors:
  same: {type: passthrough}
pipeline: [input, same, output]
"""


@pytest.fixture
def site(tmp_path, monkeypatch):
    """The example package installed into a temporary site folder on ``sys.path``; forgotten afterwards."""
    folder = install(EXAMPLE, tmp_path)
    monkeypatch.syspath_prepend(str(folder))
    yield folder
    forget("framegraph_lines")


def test_framegraph_run_runs_an_agent_on_the_installed_transport(site, tmp_path):
    assert load_registry().get("transport", "text_lines").summary.startswith("text lines")
    (tmp_path / "said.txt").write_text("hello\nis anyone there\n", encoding="utf-8")
    (tmp_path / "lines.yaml").write_text(CONFIG, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-m", "pipelines.cli", "run", str(tmp_path / "lines.yaml")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "heard.txt").read_text(encoding="utf-8").splitlines() == ["hello", "is anyone there"]


def test_the_transports_params_are_validated_like_the_builtins(site, tmp_path):
    (tmp_path / "lines.yaml").write_text(CONFIG, encoding="utf-8")
    with pytest.raises(ConfigErrors) as raised:
        load_agent_text(CONFIG, str(tmp_path / "lines.yaml"), registry=load_registry())
    assert "lines.yaml:3:" in str(raised.value) and "said.txt" in str(raised.value)


def test_the_transport_is_not_installed_outside_the_fixture():
    assert load_registry().get("transport", "text_lines") is None
