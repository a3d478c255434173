"""docs/architecture.md matches the code: every module it names exists, and it names every package."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
TOPS = ("pipelines", "processors", "transports", "tests", "bench", "configs", "docs", "scripts")
#: A path in backticks that starts at one of the repository's folders: `pipelines/builder.py`, `transports/web/`.
PATH = re.compile(rf"`((?:{'|'.join(TOPS)})/[\w./-]*)`")


def test_every_path_the_page_names_exists():
    named = set(PATH.findall(DOC.read_text(encoding="utf-8")))
    assert len(named) > 40  # the page names its modules by path; a rewrite that stops doing so fails here
    missing = sorted(p for p in named if not (ROOT / p.rstrip("/")).exists())
    assert not missing, f"docs/architecture.md names what does not exist: {missing}"


def test_the_page_names_every_package():
    text = DOC.read_text(encoding="utf-8")
    packages = sorted(str(init.parent.relative_to(ROOT)) for top in ("pipelines", "processors", "transports")
                      for init in (ROOT / top).rglob("__init__.py"))
    unnamed = [p for p in packages if f"`{p}/" not in text]
    assert not unnamed, f"packages docs/architecture.md does not name: {unnamed}"
