"""The web page in headless Chromium: the first question answered, the states, reconnection and resume.

Chromium (Debian's ``chromium`` package, installed by ``scripts/setup.sh
--test``) is driven over the DevTools protocol (``transports.clients.chromium``); its fake
microphone plays espeak-ng asking "what is the weather like today" to the
default assistant (configs/assistant.yaml) served over WebRTC: the first
utterance of a session, which the out-of-domain check once rejected (its
decoder read the near-digital silence before it as words).
"""

import time
from pathlib import Path

import aiohttp
from conftest import ROOT
from transport_kit import on_transport, speech

from pipelines.audio import write_wav
from pipelines.server.app import running
from transports.clients.chromium import chromium

BOT_LINE = "(window.framegraph.transcript.find(l => l.who === 'bot' && l.text.includes('walk')) || {}).text"
USER_LINE = "(window.framegraph.transcript.find(l => l.who === 'user') || {}).text"
ACTIVITIES = "window.framegraph.history.filter(h => h.activity).map(h => h.activity)"
TEXTS = "window.framegraph.history.map(h => h.text || '')"


async def fake_microphone(path: Path, text: str, rate: int = 16000) -> Path:
    """A 16-bit PCM WAV of ``text`` spoken, after silence (the page starts it before connecting). The silence
    (4 s) outlasts connecting on a loaded machine, so the first utterance reaches a connected peer whole."""
    samples = bytes(2 * rate * 4) + await speech(text) + bytes(3 * rate * 2)
    write_wav(path, samples, rate)
    return path


async def metric(url: str, name: str) -> float:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as r:
        text = await r.text()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


async def test_page_answers_the_first_question_follows_the_bot_and_reconnects(tmp_path):
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
            # The first utterance of the session is understood and answered, in one bubble.
            line = await page.wait_for(BOT_LINE, 30, "the answer to the first question")
            assert line.startswith("It is sunny"), "the first question of the session was not understood"
            assert await page.eval(USER_LINE) == "what is the weather like today"
            assert await page.eval("window.framegraph.transcript.filter(l => l.who === 'bot').length") == 1
            assert line in await page.eval("document.getElementById('transcript').textContent")
            # The state followed the bot: thinking after the question, speaking while it was heard, then listening.
            await page.wait_for(f"{ACTIVITIES}.slice(-1)[0] === 'listening'", 15, "listening after the answer")
            activities = await page.eval(ACTIVITIES)
            assert activities.index("thinking") < activities.index("speaking") < len(activities) - 1, activities
            # The page timed the answer at its ear and told the server, whose metrics keep it.
            heard = await page.eval("window.framegraph.heard")
            assert len(heard) == 1 and 0 < heard[0] < 5000, heard
            assert await metric(url, "framegraph_page_speech_end_to_heard_seconds_count") == 1
            first = await page.eval("window.framegraph.session.id")
            # The bot's audio packets keep coming in silence: no false alarm while the call is up.
            assert not await page.eval("window.framegraph.history.some(h => h.state === 'reconnecting')")

        # The server is gone: "reconnecting…" within about a second, then each retry step, 1 s then 2 s.
        gone = time.time()
        await page.wait_for("window.framegraph.state === 'reconnecting'", 10, "reconnecting")
        shown = await page.eval("window.framegraph.history.find(h => h.state === 'reconnecting').at") / 1000
        assert shown - gone < 3.0, f"'reconnecting' took {shown - gone:.1f} s"  # 1 s of missed packets, at load 8
        assert await page.eval("!document.getElementById('retry').hidden")
        await page.wait_for(
            f"{TEXTS}.some(t => t.includes('reconnecting in 2 s (attempt 2 of 10)'))", 20, "second reconnection step"
        )
        texts = await page.eval(TEXTS)
        assert not any("Failed to fetch" in t for t in texts), texts
        assert any("the agent cannot be reached" in t for t in texts), texts
        # The server is back with its store: the page resumes the same session with its token.
        async with running(agent, port=port, store=store) as (_, server):
            await page.wait_for("window.framegraph.state === 'connected'", 30, "reconnected")
            assert list(server.sessions) == [first]
            assert await page.eval("window.framegraph.session.id") == first
            # A reload keeps the session (localStorage): Connect resumes it.
            await page.call("Page.navigate", url=f"http://127.0.0.1:{port}/")
            await page.wait_for("document.readyState === 'complete' && !!window.framegraph", 15, "page reload")
            await page.eval("document.getElementById('connect').click()")
            await page.wait_for("window.framegraph.state === 'connected'", 20, "connected after the reload")
            assert await page.eval("window.framegraph.session.id") == first
            assert list(server.sessions) == [first]


async def test_page_mutes_the_bot_while_the_person_speaks_and_a_noise_burst_interrupts_nothing(tmp_path):
    """Over the story: a 150 ms noise burst mutes the bot for a moment, interrupts nothing, and the story goes
    on; "hello" mutes it at once (whether the agent then interrupts it is its VAD's call, tested elsewhere)."""
    import numpy as np

    rate = 16000
    noise = np.random.default_rng(19).normal(0, 6000, int(0.15 * rate)).clip(-32768, 32767).astype(np.int16).tobytes()
    samples = (bytes(2 * 2 * rate) + await speech("tell me a story") + bytes(2 * int(2.5 * rate)) + noise
               + bytes(2 * int(1.5 * rate)) + await speech("hello") + bytes(2 * 6 * rate))
    mic = tmp_path / "mic.wav"
    write_wav(mic, samples, rate)
    agent = on_transport(ROOT / "configs" / "assistant.yaml", "webrtc")
    async with chromium(tmp_path / "profile", mic) as page, running(agent, store=str(tmp_path / "s.db")) as (url, _):
        await page.call("Page.navigate", url=url)
        await page.wait_for("document.readyState === 'complete' && !!window.framegraph", 15, "page load")
        await page.eval("document.getElementById('connect').click()")
        await page.wait_for("window.framegraph.state === 'connected'", 20, "connected")
        story = "(window.framegraph.transcript.find(l => l.who === 'bot' && l.text.includes('robot')) || {})"
        await page.wait_for(f"{story}.text", 30, "the story")
        since = await page.eval("Date.now()")
        interruptions = f"window.framegraph.messages.filter(m => m.type === 'bot-interrupted' && m.at > {since}).length"
        # The noise burst: the bot heard, then muted; no interruption; the story goes on.
        await page.wait_for("window.framegraph.ducks >= 1", 15, "the bot muted by the noise burst")
        assert await page.eval(interruptions) == 0
        await page.wait_for("!document.getElementById('bot-audio').muted", 5, "the bot unmuted after the burst")
        # "hello": muted again at once; once the person is quiet the bot stays muted only if the agent cut it.
        await page.wait_for("window.framegraph.ducks >= 2", 15, "the bot muted by the barge-in")
        await page.wait_for(f"{story}.li.classList.contains('cut') || !document.getElementById('bot-audio').muted",
                            10, "the story cut, or the bot playing on")


async def test_page_mute_level_rises_with_a_noisy_room(tmp_path):
    """The mute level follows the microphone's noise floor: a steady room noise louder than the quiet-room level
    (-45 dBFS) does not keep the bot muted, while speech over that noise still mutes it at once."""
    mic = tmp_path / "mic.wav"
    write_wav(mic, bytes(2 * 16000), 16000)
    agent = on_transport(ROOT / "configs" / "assistant.yaml", "webrtc")
    async with chromium(tmp_path / "profile", mic) as page, running(agent, store=str(tmp_path / "s.db")) as (url, _):
        await page.call("Page.navigate", url=url)
        await page.wait_for("document.readyState === 'complete' && !!window.framegraph", 15, "page load")
        feed = "(db, n) => { for (let i = 0; i < n; i++) onMicLevel(db, performance.now()); return mute.ducked; }"
        # A quiet room (-60 dBFS): the level stays at -45 dBFS.
        assert await page.eval(f"({feed})(-60, 300)") is False
        assert await page.eval("window.framegraph.duckLevel") == -45
        # A fan at -40 dBFS: muted at first, then, as the floor rises to it, the bot plays on under the fan.
        assert await page.eval(f"({feed})(-40, 300)") is False
        assert await page.eval("window.framegraph.duckLevel") > -40
        # Speech over the fan (-25 dBFS for 50 ms) mutes the bot; 150 ms back at the fan lets it play on.
        assert await page.eval(f"({feed})(-25, 5)") is True
        assert await page.eval(f"({feed})(-40, 20)") is False
