"""``--set KEY.PATH=VALUE``: overrides validated like the file, errors naming the flag."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipelines.audio import read_wav, write_wav
from pipelines.errors import ConfigErrors
from pipelines.loader import load_text
from pipelines.overrides import apply_overrides, load_agent_with, parse_override

ROOT = Path(__file__).resolve().parent.parent
TOUR = ROOT / "configs" / "graph_tour.yaml"

FILES = """\
version: 1
name: files
transport:
  type: file
  input: in.wav
  output: bot.wav
  tail_secs: 0.1
processors:
  pass: {type: passthrough}
pipeline: [input, pass, output]
"""


def framegraph(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


def test_values_are_read_as_yaml():
    assert parse_override("processors.slow.delay_ms=7").value == 7
    assert parse_override("interruptions.enabled=false").value is False
    assert parse_override("name='8'").value == "8"
    assert parse_override("pipeline.0=input").path == ("pipeline", 0)
    assert parse_override("transport.input=").value == ""


@pytest.mark.parametrize("text", ["nope", "=3", "a..b=1", "a=[unclosed"])
def test_malformed_overrides_name_the_flag(text):
    with pytest.raises(ConfigErrors) as caught:
        parse_override(text)
    (error,) = caught.value.errors
    assert str(error).startswith("--set: ")


def test_an_override_replaces_the_value_and_takes_its_mark():
    loaded = load_text("a:\n  b: {c: 1, d: 2}\n", "x.yaml")
    apply_overrides(loaded, ["a.b=5", "a.e.f=x"])
    assert loaded.data == {"a": {"b": 5, "e": {"f": "x"}}}
    assert str(loaded.mark_for(("a", "b"))) == "--set"
    assert ("a", "b", "c") not in loaded.value_marks  # the replaced mapping's marks are gone
    assert str(loaded.mark_for(("a",))) == "x.yaml:2:3"


def test_overridden_values_are_validated_like_the_file_and_errors_point_at_the_flag():
    with pytest.raises(ConfigErrors) as caught:
        load_agent_with(TOUR, ["processors.slow.delay_ms=-1", "processors.slow.delay=3", "pipeline.1.x=2"])
    lines = sorted(str(e) for e in caught.value.errors)
    assert lines == [
        "--set: pipeline.1.x: pipeline.1 is not a mapping or a list",
        "--set: processors.slow.delay: unknown key (did you mean 'delay_ms'?)",
        "--set: processors.slow.delay_ms: input should be greater than or equal to 0",
    ]


def test_a_good_override_changes_the_agent():
    agent = load_agent_with(TOUR, ["processors.slow.delay_ms=7", "processors.log.prefix=hi"])
    assert agent.processors["slow"].params.delay_ms == 7 and agent.processors["log"].params.prefix == "hi"


def test_a_path_param_set_on_the_command_line_is_relative_to_the_current_folder(tmp_path, monkeypatch):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "agent.yaml").write_text(FILES)
    write_wav(tmp_path / "q.wav", bytes(320), 8000)  # inputs must exist: checked at validation
    monkeypatch.chdir(tmp_path)
    agent = load_agent_with("conf/agent.yaml", ["transport.input=q.wav", "transport.tail_secs=0.5"])
    assert agent.transport.params.input == str(tmp_path / "q.wav")
    assert agent.transport.params.output == "bot.wav"  # from the file: still relative to its folder
    assert agent.transport.params.tail_secs == 0.5


def test_framegraph_run_answers_a_recording_given_with_set(tmp_path):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "agent.yaml").write_text(FILES)
    pcm = (3000 * np.sin(np.arange(8000) / 8000 * 2 * np.pi * 440)).astype(np.int16).tobytes()
    write_wav(tmp_path / "q.wav", pcm, 8000)
    run = framegraph("run", "conf/agent.yaml", "--set", "transport.input=q.wav", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert f"bot audio: {tmp_path / 'conf' / 'bot.wav'}" in run.stdout
    assert len(read_wav(tmp_path / "conf" / "bot.wav", 24000)) >= 2 * 24000  # the input's length at least


def test_every_config_command_takes_set_and_reports_in_one_line(tmp_path):
    for command in ("run", "check", "serve", "graph"):
        result = framegraph(command, str(TOUR), "--set", "processors.slow.delay_ms=slow")
        assert result.returncode == 1, command
        assert result.stderr.strip().splitlines()[-1] == (
            "--set: processors.slow.delay_ms: input should be a valid number, unable to parse string as a number"
        ), command
        assert "Traceback" not in result.stderr
