"""One of each: the repository keeps one run lifecycle, one WAV module, and no borrowed private names."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pipelines", "processors", "transports")


def sources(*folders: str):
    for folder in folders:
        yield from sorted((ROOT / folder).rglob("*.py"))


def offenders(pattern: str, allowed: str) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in sources(*PACKAGES)
            if re.search(pattern, p.read_text()) and p.relative_to(ROOT).as_posix() != allowed]


def test_only_the_runner_runs_workers():
    assert offenders(r"\bWorkerRunner\(", "pipelines/runner.py") == []


def test_only_the_audio_module_opens_wav_files():
    assert offenders(r"\bwave\.open\(", "pipelines/audio.py") == []


def test_no_module_imports_another_modules_private_names():
    borrowed = []
    for path in sources(*PACKAGES, "tests", "bench"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module != "__future__":
                borrowed += [f"{path.relative_to(ROOT)}: {node.module}.{a.name}" for a in node.names
                             if a.name.startswith("_") and not a.name.startswith("__")]
    assert borrowed == []
