"""The avatar on the page, in headless Chromium: the face talks, then rests after a barge-in.

Chromium's fake microphone plays espeak-ng asking "tell me a story", then
"hello" while the story plays; configs/avatar_assistant.yaml answers over
WebRTC. Screenshots of the page's face (its canvas) while the bot speaks and
just after the interruption are compared by their mouth region: the dark
inside of an open mouth, then none.
"""

import asyncio
import base64
import io

import numpy as np
from conftest import ROOT
from PIL import Image
from transport_kit import on_transport, speech

from pipelines.audio import write_wav
from pipelines.server.app import running
from transports.clients.chromium import chromium

RATE = 16000
MOUTH_INSIDE = np.array([70, 20, 30])  # transports/web/face.js COLORS.mouth
FACE = "window.framegraphFace.state"


async def microphone(path, rate: int = RATE):
    """Silence, "tell me a story", 4.5 s of silence (the story starts), "hello" (the barge-in), silence."""
    pause = lambda secs: bytes(2 * int(secs * rate))  # noqa: E731
    pcm = pause(2) + await speech("tell me a story") + pause(4.5) + await speech("hello") + pause(5)
    write_wav(path, pcm, rate)
    return path


async def open_mouth_pixels(page) -> int:
    """Pixels of the face's canvas, in its mouth region, of the mouth's inside colour (the closed lips' line has some)."""
    box = await page.eval("(() => { const r = document.querySelector('.face-canvas').getBoundingClientRect();"
                          " return {x: r.x, y: r.y, width: r.width, height: r.height}; })()")
    shot = await page.call("Page.captureScreenshot", format="png", clip={**box, "scale": 1})
    image = Image.open(io.BytesIO(base64.b64decode(shot["data"]))).convert("RGB").resize((256, 256))
    mouth = np.asarray(image, dtype=np.int16)[150:230, 70:186]
    return int((np.abs(mouth - MOUTH_INSIDE).sum(axis=2) < 40).sum())


async def test_page_face_talks_with_the_voice_and_rests_after_a_barge_in(tmp_path):
    agent = on_transport(ROOT / "configs" / "avatar_assistant.yaml", "webrtc")
    mic = await microphone(tmp_path / "mic.wav")
    async with chromium(tmp_path / "profile", mic) as page:
        async with running(agent) as (url, _):
            await page.call("Page.navigate", url=url)
            await page.wait_for("document.readyState === 'complete' && !!window.framegraphFace", 15, "page load")
            # A new user reads what the agent is and what it understands.
            intro = await page.wait_for("document.querySelector('.face-phrases:not([hidden])') &&"
                                        " document.getElementById('agent-face').textContent", 10, "introduction")
            assert agent.spec.description in intro and "tell me a story" in intro and "what time is it" in intro
            assert await page.eval("document.querySelectorAll('script[src^=\"http\"], link[href^=\"http\"]').length") == 0
            resting = await open_mouth_pixels(page)  # the closed lips' line

            await page.eval("document.getElementById('connect').click()")
            await page.wait_for("window.framegraph.state === 'connected'", 20, "connected")
            await page.wait_for(f"{FACE}.bot === 'speaking'", 30, "the story")
            interruptions = f"{FACE}.interruptions"
            before = await page.eval(interruptions)
            assert await page.eval(f"{FACE}.micLevel") >= 0
            # While the bot speaks the mouth opens and closes with the words.
            during = []
            while await page.eval(f"{FACE}.bot") == "speaking" and len(during) < 12:
                during.append(await open_mouth_pixels(page))
                await asyncio.sleep(0.1)
            assert max(during) > resting + 150, (resting, during)
            assert min(during) < max(during) / 2, during

            await page.wait_for(f"{interruptions} > {before}", 15, "barge-in")
            await asyncio.sleep(0.25)  # the ease to neutral takes 67 ms at 30 fps
            after = await open_mouth_pixels(page)
            assert await page.eval(f"{FACE}.bot") != "speaking", "the answer began too soon to see the face rest"
            assert after <= resting + 10, (resting, after, during)
            assert await page.eval(f"{FACE}.shown") > 30
