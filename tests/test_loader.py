"""The YAML loader: marks, interpolation, includes."""

import pytest

from pipelines.errors import ConfigErrors
from pipelines.loader import load_file, load_text


def test_marks_point_at_keys_and_values():
    loaded = load_text("a: 1\nb:\n  c: [x, y]\n", "f.yaml")
    assert loaded.data == {"a": 1, "b": {"c": ["x", "y"]}}
    assert (loaded.key_marks[("b", "c")].line, loaded.key_marks[("b", "c")].column) == (3, 3)
    mark = loaded.value_marks[("b", "c", 1)]
    assert (mark.line, mark.column) == (3, 10)
    assert str(loaded.mark_for(("b", "c", 1, "deeper"))) == "f.yaml:3:10"


def test_env_interpolation(monkeypatch):
    monkeypatch.setenv("FG_MODEL", "gpt-x")
    monkeypatch.delenv("FG_UNSET", raising=False)
    loaded = load_text("m: ${FG_MODEL}\nu: '${FG_UNSET:-fallback}'\nmix: a-${FG_MODEL}-b\nempty: ${FG_UNSET:-}\n")
    assert loaded.data == {"m": "gpt-x", "u": "fallback", "mix": "a-gpt-x-b", "empty": ""}


def test_missing_env_is_an_error_with_its_line(monkeypatch):
    monkeypatch.delenv("FG_UNSET", raising=False)
    with pytest.raises(ConfigErrors) as e:
        load_text("a: 1\nb: ${FG_UNSET}\n", "f.yaml")
    assert str(e.value.errors[0]).startswith("f.yaml:2:4: b: environment variable FG_UNSET is not set")


def test_include_inside_folder(tmp_path):
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "procs.yaml").write_text("tts: {type: espeak}\n")
    (tmp_path / "agent.yaml").write_text("processors: !include parts/procs.yaml\n")
    loaded = load_file(tmp_path / "agent.yaml")
    assert loaded.data == {"processors": {"tts": {"type": "espeak"}}}
    mark = loaded.value_marks[("processors", "tts", "type")]
    assert mark.file.name == "procs.yaml" and mark.line == 1


def test_include_outside_folder_is_refused(tmp_path):
    (tmp_path / "secret.yaml").write_text("x: 1\n")
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "agent.yaml").write_text("a: !include ../secret.yaml\n")
    with pytest.raises(ConfigErrors, match="leaves the config's folder"):
        load_file(tmp_path / "cfg" / "agent.yaml")


def test_include_cycle_is_refused(tmp_path):
    (tmp_path / "a.yaml").write_text("x: !include b.yaml\n")
    (tmp_path / "b.yaml").write_text("y: !include a.yaml\n")
    with pytest.raises(ConfigErrors, match="includes itself"):
        load_file(tmp_path / "a.yaml")


def test_duplicate_key_and_unreadable_file(tmp_path):
    with pytest.raises(ConfigErrors, match="2:1: a: duplicate key"):
        load_text("a: 1\na: 2\n")
    with pytest.raises(ConfigErrors, match="cannot read config"):
        load_file(tmp_path / "missing.yaml")
