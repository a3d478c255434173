"""``framegraph run`` on a served transport loads the agent's models before it serves.

Without it the first Connect of ``framegraph run`` (webrtc) took 3.3-4.6 s
(``serve``, whose workers start warm: 0.3-0.6 s) while the decoder host
loaded its acoustic model, and the words spoken meanwhile were lost.
"""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml
from conftest import ROOT


def children(pid: int) -> list[str]:
    """Command lines of ``pid``'s child processes."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if ppid == pid:
                    found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
            except (OSError, IndexError, ValueError):
                pass
    return found


def test_run_serves_with_the_decoder_host_already_loaded(tmp_path):
    spec = yaml.safe_load((ROOT / "configs" / "assistant.yaml").read_text())
    spec["transport"] = {"type": "webrtc", "port": 0, "audio_in_sample_rate": 16000, "audio_out_sample_rate": 24000}
    config = tmp_path / "assistant.yaml"
    config.write_text(yaml.safe_dump(spec))
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "run", str(config)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + 120
        line = ""
        while "serving" not in line:
            assert time.monotonic() < deadline and proc.poll() is None, "framegraph run did not start serving"
            line = proc.stdout.readline()
        assert re.search(r"http://[\d.]+:\d+/", line), line
        # Nobody has connected yet: the decoder host is up, its model loaded, before the first Connect.
        assert any("processors.stt.decoder_host" in c for c in children(proc.pid)), children(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
