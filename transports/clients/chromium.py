"""Headless Chromium driven over the DevTools protocol, for the web page's tests and benchmark.

Chromium is Debian's ``chromium`` package (``scripts/setup.sh --test``
installs it); never a browser a test tool downloads. The flags are the ones
docs/pipecat-facts.md lists: a fresh profile, no network services, and a fake microphone
that plays a 16-bit PCM WAV (pad it with silence: it starts playing when the
page asks for the microphone, before the call connects).
"""

import asyncio
import contextlib
import itertools
import json
import shutil
import subprocess
import time
from pathlib import Path

import aiohttp
import websockets

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


class Page:
    """One Chromium tab over the DevTools protocol."""

    def __init__(self, ws):
        self._ws = ws
        self._ids = itertools.count(1)

    async def call(self, method: str, **params):
        call_id = next(self._ids)
        await self._ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            reply = json.loads(await self._ws.recv())
            if reply.get("id") == call_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    async def eval(self, expression: str):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float, what: str):
        """Polls ``expression`` until it is truthy; one that throws (the page still loading) is polled again,
        and its last error is part of the timeout's message."""
        deadline, error = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            try:
                value = await self.eval(expression)
            except RuntimeError as e:
                value, error = None, e
            if value:
                return value
            await asyncio.sleep(0.1)
        history = await self.eval("JSON.stringify(window.framegraph && window.framegraph.history)")
        raise TimeoutError(f"{what} within {timeout} s; page states: {history}" + (f"; last error: {error}" if error else ""))


@contextlib.asynccontextmanager
async def chromium(profile: Path, microphone: Path):
    """A headless Chromium with a fake microphone; yields its first tab."""
    profile.mkdir()
    proc = subprocess.Popen(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", "--remote-debugging-port=0",
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={microphone}",
            "--autoplay-policy=no-user-gesture-required", "--allow-loopback-in-peer-connection",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            assert proc.poll() is None and time.monotonic() < deadline, "Chromium did not start"
            await asyncio.sleep(0.1)
        port = port_file.read_text().split()[0]
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as r:
                tab = next(t for t in await r.json() if t["type"] == "page")
        async with websockets.connect(tab["webSocketDebuggerUrl"], max_size=None) as ws:
            yield Page(ws)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
