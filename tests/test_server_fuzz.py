"""schemathesis against the server's OpenAPI schema: no 500s, no hangs.

A real server (``framegraph serve`` in a subprocess, SQLite store) is fuzzed
through every operation of its own ``/openapi.json`` with a bounded number
of examples each (the whole run stays well under a minute); each request
must answer within the request timeout and never with a server error.
"""

import asyncio
import re
import shutil
import signal
import sys
from pathlib import Path

from conftest import ROOT

AGENT = """
version: 1
name: tone
transport: {type: websocket, port: 0}
processors:
  bot: {type: tone_reply, reply_secs: 1, stop_ms: 300}
pipeline: [input, bot, output]
"""


async def test_fuzzing_the_api_finds_no_server_error_and_no_hang(tmp_path):
    config = tmp_path / "tone.yaml"
    config.write_text(AGENT)
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pipelines.cli", "serve", str(config), "--transport", "websocket", "--port", "0",
        "--store", str(tmp_path / "sessions.db"), "--connect-timeout", "2",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, cwd=ROOT,
    )
    try:
        line = (await asyncio.wait_for(server.stdout.readline(), 60)).decode()
        url = re.search(r"(http://[\d.]+:\d+)/", line).group(1)
        st = Path(sys.executable).parent / "schemathesis"
        fuzz = await asyncio.create_subprocess_exec(
            str(st if st.exists() else shutil.which("schemathesis")), "run", f"{url}/openapi.json",
            "--max-examples", "15", "--checks", "not_a_server_error", "--request-timeout", "5",
            "--workers", "1", "--generation-deterministic", "--phases", "examples,coverage,fuzzing",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,
        )
        out, _ = await asyncio.wait_for(fuzz.communicate(), 150)
        report = out.decode(errors="replace")
        assert fuzz.returncode == 0, report[-4000:]
        assert re.search(r"\d+ passed", report), report[-2000:]
    finally:
        server.send_signal(signal.SIGINT)
        await asyncio.wait_for(server.wait(), 20)
