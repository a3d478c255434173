"""A newcomer's first hour: the stumbles issue 22 found, each pinned by a test.

Every test runs the real command (``pipelines.cli.main``, or ``framegraph`` in
a subprocess where the process matters) on real files.
"""

from pathlib import Path

from pipelines.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_validate_reports_an_unknown_top_level_key_and_every_other_problem(tmp_path, capsys):
    # Caught: an unknown top-level key stopped validation, hiding the file's other errors.
    config = tmp_path / "many.yaml"
    config.write_text("""version: 1
name: many
colour: blue
transport: {type: synthtic}
processors:
  a: {type: passthrough, bogus: 1}
  b: {nope: 1}
pipeline: [input, a, c, output]
""")
    assert main(["validate", str(config)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert f"{config}:3:1: colour: unknown key" in lines
    assert f"{config}:4:19: transport.type: unknown transport type 'synthtic' (did you mean 'synthetic'?)" in lines
    assert f"{config}:6:26: processors.a.bogus: unknown key" in lines
    assert f"{config}:7:6: processors.b.type: required key is missing" in lines
    assert f"{config}:8:22: pipeline.2: 'c' is not a declared processor" in lines
    # A malformed block still counts as declared: no false "not declared" for it.
    assert not [line for line in lines if "'b' is not a declared" in line]


def test_a_missing_local_model_folder_fails_validation_before_anything_serves(tmp_path, capsys):
    # Caught: the agent validated "ok" and served; each client got a silent connection.
    config = tmp_path / "local.yaml"
    config.write_text("""version: 1
name: local
transport: {type: webrtc}
processors:
  stt: {type: local_whisper_stt, model_path: models/whisper-tiny.en}
pipeline: [input, stt, output]
""")
    assert main(["validate", str(config)]) == 1
    expected = (f"{config}:5:46: processors.stt.model_path: {tmp_path}/models/whisper-tiny.en "
                "is not a model directory (no config.json)")
    assert capsys.readouterr().err.splitlines() == [expected]
    assert main(["serve", str(config), "--port", "0", "--workers", "1"]) == 1
    assert capsys.readouterr().err.splitlines() == [expected]


def test_validate_and_check_agree_about_an_unset_openai_key(monkeypatch, capsys):
    # Caught: validate said ok without OPENAI_API_KEY; check then failed with "Missing credentials".
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    config = ROOT / "configs" / "cloud_assistant.yaml"
    assert main(["validate", str(config)]) == 1
    validate_lines = capsys.readouterr().err.splitlines()
    assert [line.split(": ", 1)[1] for line in validate_lines] == [  # each with its file:line:column
        f"processors.{pid}: set OPENAI_API_KEY (or give api_key: ${{YOUR_VAR}})" for pid in ("stt", "llm", "tts")]
    assert main(["check", str(config)]) == 1
    assert capsys.readouterr().err.splitlines() == validate_lines
