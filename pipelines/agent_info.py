"""What a client page shows a new user about the agent: what it is, what it understands, whether it has a face.

The server returns ``agent_info(agent)`` as JSON (``GET /api/agent``); the
page (``transports/web/face.js``) shows the description, the phrases of a
closed-domain agent, and the face when the agent has an avatar that sends
poses. Read from the validated config only: nothing here starts anything.
"""

from typing import Any

from pipelines.validate import Agent

#: The avatar outputs that send pose messages to the client (a face the page can draw).
POSE_OUTPUTS = ("poses", "poses_and_video")


def agent_info(agent: Agent) -> dict[str, Any]:
    """The agent as a page introduces it.

    Returns:
        ``name``; ``description`` (the config's, may be empty); ``phrases``:
        the closed domain's phrases (the first processor with a ``phrases``
        param, e.g. pocketsphinx), or None for an open-domain agent;
        ``avatar``: ``{"fps": ...}`` when an avatar sends poses to the client, else None;
        ``voice``: the voice the agent speaks with, as its TTS type names it
        (``"Piper en_US-joe-medium"``, ``"espeak-ng en-us"``; the params'
        ``voice_name()``), or None when its TTS names none.
    """
    phrases = next((list(p) for c in agent.processors.values() if (p := getattr(c.params, "phrases", None))), None)
    avatar = next(
        (c.params for c in agent.processors.values()
         if c.type.name == "avatar" and getattr(c.params, "output", None) in POSE_OUTPUTS),
        None,
    )
    voice = next((v() for c in agent.processors.values() if (v := getattr(c.params, "voice_name", None))), None)
    return {
        "name": agent.spec.name,
        "description": agent.spec.description,
        "phrases": phrases,
        "avatar": {"fps": avatar.fps} if avatar is not None else None,
        "voice": voice,
    }
