"""A third-party processor package (tests/plugin_example) installed through the ``framegraph.types`` entry point.

pip installs the example into a temporary folder (``plugin_kit.install``). The
registry loads the type, a config using it validates (and a wrong param is
reported at its line), and the agent runs on the synthetic transport.
"""

from pathlib import Path

import pytest
from pipecat.frames.frames import TextFrame
from plugin_kit import forget, install

from pipelines.errors import ConfigErrors
from pipelines.registry import load_registry
from pipelines.testing import AgentHarness
from pipelines.validate import load_agent_text

EXAMPLE = Path(__file__).parent / "plugin_example"
CONFIG = """\
version: 1
name: plugin
transport: {type: synthetic}
processors:
  loud: {type: shout, suffix: "!!"}
pipeline: [input, loud, output]
"""


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """The example package installed into a temporary site folder on ``sys.path``; forgotten afterwards."""
    monkeypatch.syspath_prepend(str(install(EXAMPLE, tmp_path)))
    yield load_registry()
    forget("framegraph_shout")


async def test_an_installed_plugin_validates_and_runs(installed):
    assert installed.get("processor", "shout").summary.startswith("upper-cases")
    agent = load_agent_text(CONFIG, registry=installed)
    async with AgentHarness(agent) as h:
        out = h.probe("loud")
        await h.inject(TextFrame("hello"))
        shouted = await out.wait_for(TextFrame, timeout=5)
    assert shouted.text == "HELLO!!"


def test_a_plugins_params_are_validated_like_the_builtins(installed):
    with pytest.raises(ConfigErrors) as raised:
        load_agent_text(CONFIG.replace('suffix: "!!"', "suffix: 3, volume: 11"), "plugin.yaml", registry=installed)
    message = str(raised.value)
    assert "plugin.yaml:5:" in message and "processors.loud.volume" in message


def test_the_plugin_is_not_installed_outside_the_fixture():
    assert load_registry().get("processor", "shout") is None
