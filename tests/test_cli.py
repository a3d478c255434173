"""The framegraph command, run as a user runs it."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOUR = ROOT / "configs" / "graph_tour.yaml"


def framegraph(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


def test_validate_ok_and_broken_exit_codes():
    ok = framegraph("validate", str(TOUR))
    assert ok.returncode == 0 and "ok (graph_tour" in ok.stdout
    bad = framegraph("validate", str(TOUR), "tests/broken/unknown_type.yaml", "tests/broken/unused_processor.yaml")
    assert bad.returncode == 1
    errors = bad.stderr.strip().splitlines()
    assert errors == [
        "tests/broken/unknown_type.yaml:6:13: processors.a.type: unknown processor type 'passthru' (did you mean 'passthrough'?)",
        "tests/broken/unused_processor.yaml:7:3: processors.spare: processor 'spare' is declared but never used in the pipeline",
    ]
    assert "Traceback" not in bad.stderr


def test_graph_prints_mermaid_with_joins():
    result = framegraph("graph", str(TOUR))
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "flowchart LR"
    ids = {line.split("[")[0].strip(): line.split('"')[1] for line in lines if '["' in line}  # generated ids: n0, n1...
    names = {label.split(" ")[0]: node for node, label in ids.items()}
    assert f"    {names['input']} --> {names['normalize']}" in lines
    assert any(line.startswith(f"    {names['log']} --> ") and line.split()[-1] not in ids for line in lines)  # to a join
    assert sum(1 for line in lines if "((join))" in line) == 2


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".svg", b"<?xml")])
def test_graph_draws_pictures(tmp_path, suffix, magic):
    out = tmp_path / f"g{suffix}"
    result = framegraph("graph", str(TOUR), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_bytes().startswith(magic)


def test_list_shows_types_and_params():
    result = framegraph("list", "--kind", "processor")
    assert result.returncode == 0
    assert "passthrough" in result.stdout and "delay_ms: float (default 0.0)" in result.stdout


def test_every_command_has_help():
    for command in ("validate", "graph", "run", "list"):
        result = framegraph(command, "--help")
        assert result.returncode == 0 and "usage: framegraph" in result.stdout


def test_run_refuses_a_broken_config_without_starting():
    result = framegraph("run", "tests/broken/no_output_end.yaml")
    assert result.returncode == 1
    assert "must end at 'output'" in result.stderr and "StartFrame" not in result.stderr
