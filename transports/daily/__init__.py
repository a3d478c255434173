"""The ``daily`` transport type: the agent joins a Daily room (``daily`` extra).

The room comes from the YAML (``room_url``, ``token``) or the environment
(``DAILY_ROOM_URL``, ``DAILY_TOKEN``); with only an API key (``api_key`` or
``DAILY_API_KEY``) ``framegraph run`` creates a room through Daily's REST API
and prints its URL. Configs validate without the extra and without a network.

Daily's own client never reports a join it cannot make offline: it hangs
(seen with daily-python on a machine without network). ``serve_daily`` bounds the join by ``join_timeout_secs`` and fails
with what to check; pipecat already guards the process-wide ``Daily.init()``,
which aborts the process when called twice.
"""

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Any

from loguru import logger
from pydantic import Field

from pipelines.errors import CannotStart, missing_extra
from pipelines.registry import BuildContext, TypeInfo
from pipelines.transport_contract import AudioTransportParams, import_optional_transport, video_io

ENV_ROOM_URL, ENV_TOKEN, ENV_API_KEY = "DAILY_ROOM_URL", "DAILY_TOKEN", "DAILY_API_KEY"


class DailyRoomParams(AudioTransportParams):
    room_url: str = Field("", pattern=r"^(https://\S+)?$", description=f"room to join; default ${ENV_ROOM_URL}")
    token: str = Field("", description=f"meeting token for the room; default ${ENV_TOKEN}")
    api_key: str = Field("", description=f"Daily API key, to create a room when none is given; default ${ENV_API_KEY}")
    api_url: str = Field("https://api.daily.co/v1", pattern=r"^https?://\S+$", description="Daily REST API")
    bot_name: str = Field("framegraph", min_length=1, max_length=100, description="the agent's name in the room")
    room_expiry_secs: int = Field(3600, gt=0, le=7 * 24 * 3600, description="lifetime of a room the agent creates")
    join_timeout_secs: float = Field(20.0, gt=0, le=300, description="give up joining after this long")


class DailyError(CannotStart):
    """The agent cannot be in a Daily room; the message says what to fix (``framegraph run`` prints it as one line)."""


@dataclass(frozen=True)
class Room:
    """A Daily room the agent can join."""

    url: str
    token: str | None = None


def given_room(params: DailyRoomParams, env: dict[str, str] | None = None) -> Room | None:
    """The room named in the params or the environment, or None."""
    env = os.environ if env is None else env
    url = params.room_url or env.get(ENV_ROOM_URL, "")
    return Room(url, params.token or env.get(ENV_TOKEN) or None) if url else None


def api_key_of(params: DailyRoomParams, env: dict[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return params.api_key or env.get(ENV_API_KEY, "")


def nothing_to_join() -> DailyError:
    return DailyError(
        f"no Daily room to join: set the transport's room_url (or ${ENV_ROOM_URL}, with token or ${ENV_TOKEN} "
        f"for a private room), or give an API key (api_key or ${ENV_API_KEY}) to create a room"
    )


async def open_room(params: DailyRoomParams, env: dict[str, str] | None = None) -> Room:
    """The room to join: the one given, or a new one created with the API key."""
    room = given_room(params, env)
    if room:
        return room
    key = api_key_of(params, env)
    if not key:
        raise nothing_to_join()
    return await create_room(params.api_url, key, params.room_expiry_secs)


async def create_room(api_url: str, api_key: str, expiry_secs: int) -> Room:
    """Creates a room and an owner token for it through Daily's REST API."""
    import aiohttp

    expires = int(time.time()) + expiry_secs
    headers = {"Authorization": f"Bearer {api_key}"}
    try:
        async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=15)) as http:
            room = await _post(http, f"{api_url}/rooms", {"properties": {"exp": expires}})
            token = await _post(
                http, f"{api_url}/meeting-tokens", {"properties": {"room_name": room["name"], "exp": expires, "is_owner": True}}
            )
    except (TimeoutError, aiohttp.ClientError) as e:
        raise DailyError(f"could not reach Daily's API at {api_url} to create a room ({e.__class__.__name__}: {e})") from e
    logger.info(f"created Daily room {room['url']} (expires in {expiry_secs} s)")
    return Room(room["url"], token["token"])


async def _post(http: Any, url: str, body: dict) -> dict:
    async with http.post(url, json=body) as response:
        if response.status >= 400:
            raise DailyError(f"Daily's API refused {url}: {response.status} {await response.text()}")
        return await response.json()


def make_daily_transport(params: DailyRoomParams, ctx: BuildContext):
    """The room's transport; the room is the one ``serve_daily`` opened (``ctx.peer``), or the one given."""
    room = ctx.peer or given_room(params)
    if room is None:
        raise nothing_to_join()
    try:
        daily = import_optional_transport("pipecat.transports.daily.transport")
    except ImportError as e:
        raise missing_extra("transport", "daily", e) from None
    DailyParams, DailyTransport = daily.DailyParams, daily.DailyTransport
    return DailyTransport(
        room.url,
        room.token,
        params.bot_name,
        DailyParams(**params.audio_io(), **video_io(ctx.video_out)),
        input_name="input",
        output_name="output",
    )


async def serve_daily(agent: Any, options: Any = None) -> None:
    """``framegraph run`` for daily agents: join the room and talk until everyone has left.

    Raises:
        DailyError: no room and no API key, the room could not be created, or
            the join failed or took longer than ``join_timeout_secs``.
    """
    from pipelines.builder import build_agent
    from pipelines.client_protocol.rtvi import for_client
    from pipelines.runner import run_worker

    params: DailyRoomParams = agent.transport.params
    room = await open_room(params)
    built = build_agent(agent, peer=room, additions=(for_client,))
    worker = built.worker()
    joined: asyncio.Future = asyncio.get_running_loop().create_future()
    _end_with_the_room(built.transport, worker, joined)

    running = asyncio.create_task(run_worker(worker, handle_sigint=True))
    logger.info(f"agent {agent.spec.name!r} joining {room.url}")
    try:
        await asyncio.wait_for(asyncio.shield(joined), params.join_timeout_secs)
    except TimeoutError:
        joined.set_exception(
            DailyError(
                f"could not join {room.url}: no answer from Daily within {params.join_timeout_secs:g} s "
                "(no network, or a wrong room URL?)"
            )
        )
    if joined.exception():
        await _abandon(worker, running)
        raise joined.exception()
    logger.info(f"joined {room.url}: open it to talk to the agent")
    await running


def _end_with_the_room(transport: Any, worker: Any, joined: asyncio.Future) -> None:
    """Settles ``joined`` on the join's outcome; ends ``worker`` when the last participant leaves."""

    @transport.event_handler("on_joined")
    async def _joined(t, data):
        if not joined.done():
            joined.set_result(data)

    @transport.event_handler("on_error")
    async def _error(t, message):
        if not joined.done():
            joined.set_exception(DailyError(f"could not join the Daily room: {message}"))

    @transport.event_handler("on_participant_left")
    async def _left(t, participant, reason):
        others = [p for p in t.participants().values() if not p.get("info", {}).get("isLocal")]
        if not others:
            logger.info(f"the last participant left ({reason}): ending the agent")
            await worker.cancel(reason="everyone left the room")


async def _abandon(worker: Any, running: asyncio.Task, wait_secs: float = 5.0) -> None:
    """Cancels a worker whose join failed, waiting a bounded time (a hung join may never return)."""
    try:
        await asyncio.wait_for(worker.cancel(reason="could not join the room"), wait_secs)
        await asyncio.wait_for(asyncio.shield(running), wait_secs)
    except (TimeoutError, Exception):
        logger.warning("the Daily client is still busy with its join; leaving it behind")


TYPES = [
    TypeInfo(
        kind="transport",
        name="daily",
        params=DailyRoomParams,
        factory=make_daily_transport,
        serve=serve_daily,
        summary="joins a Daily room (URL/token from YAML or env, or a room created with an API key); `daily` extra",
    ),
]
