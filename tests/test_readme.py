"""README.md is the front door on one screen: short, and its one YAML agent is a valid agent."""

import re
from pathlib import Path

from pipelines.validate import load_agent_text

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def test_the_readme_fits_on_one_screen():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 150


def test_the_readmes_agent_validates():
    (block,) = re.findall(r"```yaml\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    agent = load_agent_text(block, str(ROOT / "README.md"))
    assert agent.transport.type.name == "webrtc" and set(agent.processors) == {"stt", "llm", "tts"}
    assert not agent.notes  # it uses the types' current names
