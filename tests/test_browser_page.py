"""The web page in headless Chromium: fake microphone in, bot transcript out, reconnection and resume.

Chromium (Debian's ``chromium`` package, installed by ``scripts/setup.sh
--test``) is driven over the DevTools protocol (``transports.clients.chromium``); its fake
microphone plays espeak-ng asking "what is the weather like today" to the
default assistant (configs/assistant.yaml) served over WebRTC: the first
utterance of a session, which the out-of-domain check once rejected (its
decoder read the near-digital silence before it as words).
"""

from pathlib import Path

from conftest import ROOT
from transport_kit import on_transport, speech

from pipelines.audio import write_wav
from pipelines.server.app import running
from transports.clients.chromium import chromium


async def fake_microphone(path: Path, text: str, rate: int = 16000) -> Path:
    """A 16-bit PCM WAV of ``text`` spoken, after silence (the page starts it before connecting)."""
    samples = bytes(2 * rate * 2) + await speech(text) + bytes(3 * rate * 2)
    write_wav(path, samples, rate)
    return path


async def test_page_talks_to_the_agent_and_reconnects(tmp_path):
    agent = on_transport(ROOT / "configs" / "assistant.yaml", "webrtc")
    mic = await fake_microphone(tmp_path / "mic.wav", "what is the weather like today")
    async with chromium(tmp_path / "profile", mic) as page:
        store = str(tmp_path / "sessions.db")
        async with running(agent, store=store) as (url, server):
            port = int(url.rsplit(":", 1)[1])
            await page.call("Page.navigate", url=url)
            await page.wait_for("document.readyState === 'complete' && !!window.framegraph", 15, "page load")
            assert await page.eval("document.querySelectorAll('script[src^=\"http\"], link[href^=\"http\"]').length") == 0
            await page.eval("document.getElementById('connect').click()")
            await page.wait_for("window.framegraph.state === 'connected'", 20, "connected")
            line = await page.wait_for(
                "(window.framegraph.transcript.find(l => l.who === 'bot') || {}).text", 30, "bot transcript"
            )
            assert line.startswith("It is sunny"), "the first question of the session was not understood"
            user = "(window.framegraph.transcript.find(l => l.who === 'user') || {}).text"
            assert await page.eval(user) == "what is the weather like today"
            assert line in await page.eval("document.getElementById('transcript').textContent")
            first = await page.eval("window.framegraph.session.id")

        # The server is gone: the page shows each retry step, 1 s then 2 s.
        await page.wait_for(
            "window.framegraph.history.some(h => h.text.includes('reconnecting in 2 s (attempt 2)'))",
            15,
            "second reconnection step",
        )
        # The server is back with its store: the page resumes the same session with its token.
        async with running(agent, port=port, store=store) as (_, server):
            await page.wait_for("window.framegraph.state === 'connected'", 20, "reconnected")
            texts = await page.eval("window.framegraph.history.map(h => h.text)")
            assert any("reconnecting in 1 s (attempt 1)" in t for t in texts)
            assert list(server.sessions) == [first]
            assert await page.eval("window.framegraph.session.id") == first
