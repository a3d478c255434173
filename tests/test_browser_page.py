"""The web page in headless Chromium: fake microphone in, bot transcript out, reconnection.

Chromium (Debian's ``chromium`` package, installed by ``scripts/setup.sh
--test``) is driven over the DevTools protocol with ``websockets``; its fake
microphone plays espeak-ng saying "hello" to the default assistant
(configs/assistant.yaml) served over WebRTC.
"""

import asyncio
import contextlib
import itertools
import json
import shutil
import subprocess
import time
import wave
from pathlib import Path

import aiohttp
import websockets

from conftest import ROOT
from transport_kit import on_transport, speech

from pipelines.server import running

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

async def fake_microphone(path: Path, text: str, rate: int = 16000) -> Path:
    """A 16-bit PCM WAV of ``text`` spoken, after silence (the page starts it before connecting)."""
    samples = bytes(2 * rate * 2) + await speech(text) + bytes(3 * rate * 2)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples)
    return path


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
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = await self.eval(expression)
            if value:
                return value
            await asyncio.sleep(0.1)
        history = await self.eval("JSON.stringify(window.framegraph && window.framegraph.history)")
        raise TimeoutError(f"{what} within {timeout} s; page states: {history}")


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


async def test_page_talks_to_the_agent_and_reconnects(tmp_path):
    agent = on_transport(ROOT / "configs" / "assistant.yaml", "webrtc")
    mic = await fake_microphone(tmp_path / "mic.wav", "hello")
    async with chromium(tmp_path / "profile", mic) as page:
        async with running(agent) as (url, server):
            port = int(url.rsplit(":", 1)[1])
            await page.call("Page.navigate", url=url)
            await page.wait_for("document.readyState === 'complete' && !!window.framegraph", 15, "page load")
            assert await page.eval("document.querySelectorAll('script[src^=\"http\"], link[href^=\"http\"]').length") == 0
            await page.eval("document.getElementById('connect').click()")
            await page.wait_for("window.framegraph.state === 'connected'", 20, "connected")
            line = await page.wait_for(
                "(window.framegraph.transcript.find(l => l.who === 'bot') || {}).text", 30, "bot transcript"
            )
            assert line.startswith("Hello!")
            assert await page.eval("(window.framegraph.transcript.find(l => l.who === 'user') || {}).text") == "hello"
            assert line in await page.eval("document.getElementById('transcript').textContent")

        # The server is gone: the page shows each retry step, 1 s then 2 s.
        await page.wait_for(
            "window.framegraph.history.some(h => h.text.includes('reconnecting in 2 s (attempt 2)'))",
            15,
            "second reconnection step",
        )
        async with running(agent, port=port) as (_, server):
            await page.wait_for("window.framegraph.state === 'connected'", 20, "reconnected")
            texts = await page.eval("window.framegraph.history.map(h => h.text)")
            assert any("reconnecting in 1 s (attempt 1)" in t for t in texts)
            assert len(server.sessions) == 1
