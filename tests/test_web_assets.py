"""The server finds its web files (the talk page, the dashboard) through package resources, so a framegraph
installed from its wheel (not this checkout) serves them: pip installs the project into a temporary folder
(no index, no network, no build isolation) and a fresh interpreter, away from the checkout, looks them up."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

from pipelines.server.pages import on_disk, page_assets
from pipelines.sessions.dashboard import DASHBOARD_DIR

ROOT = Path(__file__).resolve().parents[1]
LOOK_UP = """
import json
from pipelines.server.pages import on_disk, page_assets
from pipelines.sessions.dashboard import DASHBOARD_DIR
print(json.dumps({"page": str(on_disk(page_assets())), "dashboard": str(on_disk(DASHBOARD_DIR)),
                  "files": sorted(p.name for p in (*page_assets().iterdir(), *DASHBOARD_DIR.iterdir()))}))
"""


def test_the_lookup_returns_package_folders_holding_the_pages():
    for folder in (page_assets(), DASHBOARD_DIR):
        assert folder.is_dir() and (folder / "index.html").is_file()
        assert on_disk(folder).is_dir()
    assert "<html" in (page_assets() / "index.html").read_text(encoding="utf-8").lower()


def test_an_installed_wheel_serves_the_page_and_dashboard_without_the_checkout(tmp_path):
    source, site = tmp_path / "src", tmp_path / "site"
    ignore = shutil.ignore_patterns("__pycache__", ".framegraph", "*.egg-info")
    for name in ("pipelines", "processors", "transports"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--no-build-isolation", "--target", str(site), str(source)],
                   check=True, timeout=300, capture_output=True)
    looked = subprocess.run([sys.executable, "-c", LOOK_UP], cwd=tmp_path, env={"PYTHONPATH": str(site)},
                            check=True, timeout=120, capture_output=True, text=True)
    found = json.loads(looked.stdout.strip().splitlines()[-1])
    assert Path(found["page"]).is_relative_to(site) and Path(found["dashboard"]).is_relative_to(site)
    shipped = {p.name for p in (ROOT / "transports" / "web").iterdir()} | {p.name for p in DASHBOARD_DIR.iterdir()}
    assert set(found["files"]) == shipped  # every page file is in the wheel
