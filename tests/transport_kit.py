"""Helpers shared by the transport tests (webrtc, websocket, browser)."""

import asyncio
import time
from dataclasses import replace
from pathlib import Path

from pipelines.registry import default_registry
from pipelines.validate import Agent, Component, load_agent


async def wait_until(predicate, timeout: float, what: str) -> None:
    """Polls ``predicate`` until true; raises TimeoutError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout} s")
        await asyncio.sleep(0.05)


def on_transport(agent_path: Path, transport: str, **params) -> Agent:
    """The agent from ``agent_path`` served on ``transport`` (any free port), same sample rates."""
    agent = load_agent(agent_path)
    info = default_registry().get("transport", transport)
    rates = {k: getattr(agent.transport.params, k) for k in ("audio_in_sample_rate", "audio_out_sample_rate")}
    return replace(agent, transport=Component("transport", info, info.params(port=0, **rates, **params)))


async def speech(text: str) -> bytes:
    """``text`` spoken by espeak-ng, 16 kHz mono."""
    from processors.tts.espeak import synthesize_pcm

    return await synthesize_pcm(text, voice="en-us", rate=175, sample_rate=16000)
