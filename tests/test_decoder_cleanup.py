"""The decoder host's socket folder goes away with the agents' process, however it ends."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("pocketsphinx")

ROOT = Path(__file__).resolve().parent.parent
AGENTS_PROCESS = """
import asyncio
from processors.stt.decoder_pool import HostConfig, decoder_host

async def main():
    host = decoder_host(HostConfig())
    await host.open_stream(sample_rate=16000, grammar=None, preroll_secs=1.0, interim_secs=0.3)
    print(host._dir, flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_socket_folder_is_removed_when_the_agents_process_is_killed(sig):
    agents = subprocess.Popen([sys.executable, "-c", AGENTS_PROCESS], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        folder = agents.stdout.readline().strip()
        assert Path(folder, "decoder.sock").exists()
        agents.send_signal(sig)
        agents.wait(timeout=10)
        deadline = time.monotonic() + 10
        while Path(folder).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not Path(folder).exists()  # removed by the host itself, on its way out
    finally:
        agents.kill()
        agents.wait()
