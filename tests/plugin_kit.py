"""Installing an example plug-in package (tests/plugin_example, tests/transport_example) as a user would.

pip installs it into a temporary folder (no index, no network, no build
isolation: setuptools comes from the running environment); the folder goes
on ``sys.path``, where ``importlib.metadata`` finds the package's
``framegraph.types`` entry point, as it would in a virtual environment's
site-packages.
"""

import shutil
import subprocess
import sys
from pathlib import Path


def install(example: Path, tmp_path: Path) -> Path:
    """Installs the package in ``example``; returns the site folder to put on ``sys.path``."""
    source, site = tmp_path / f"{example.name}-src", tmp_path / f"{example.name}-site"
    shutil.copytree(example, source)  # setuptools writes build files next to the sources
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--no-build-isolation",
         "--target", str(site), str(source)],
        check=True, timeout=180, capture_output=True,
    )
    return site


def forget(package: str) -> None:
    """Drops ``package``'s modules from ``sys.modules`` (the next test starts without it)."""
    for name in [m for m in sys.modules if m.split(".")[0] == package]:
        del sys.modules[name]
