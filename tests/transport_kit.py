"""Helpers shared by the transport tests (webrtc, websocket, browser)."""

import asyncio
import time
from pathlib import Path

from pipelines.client_protocol import messages as cm
from pipelines.server.app import served_on
from pipelines.validate import Agent, load_agent


async def wait_until(predicate, timeout: float, what: str) -> None:
    """Polls ``predicate`` until true; raises TimeoutError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout} s")
        await asyncio.sleep(0.05)


def on_transport(agent_path: Path, transport: str, **params) -> Agent:
    """The agent from ``agent_path`` served on ``transport`` (any free port), same sample rates."""
    return served_on(load_agent(agent_path), transport, port=0, **params)


async def speech(text: str) -> bytes:
    """``text`` spoken by espeak-ng, 16 kHz mono."""
    from processors.tts.espeak import synthesize_pcm

    return await synthesize_pcm(text, voice="en-us", rate=175, sample_rate=16000)


async def told_of_the_interruption(client, server, barged: float):
    """Waits for ``client`` (a ``Talker`` or a ``WebRTCPeer``) to be told the bot was interrupted after ``barged``.

    Returns the server's one session and when its output cut the bot off.
    """
    await client.wait_for_message(cm.BOT_INTERRUPTED, timeout=10, after=barged)
    (session,) = server.sessions.values()
    return session, session.built.transport.output().interrupted_at
