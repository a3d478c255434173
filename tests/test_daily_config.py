"""The daily transport offline: configs validate, and every failure says what to fix.

Daily's cloud is never reached: room creation runs against a local mock of
Daily's REST API, and the join timeout against a mock transport that never
joins (both named so).
"""

from dataclasses import replace

import pytest
from aiohttp import web

from pipelines.validate import load_agent_text
from transports.daily import DailyError, Room, open_room, serve_daily
from transports.synthetic import SyntheticParams, SyntheticTransport

AGENT = """
version: 1
name: room
transport: {{type: daily, {params}}}
processors:
  bot: {{type: tone_reply}}
pipeline: [input, bot, output]
"""


def agent(params: str = "bot_name: helper"):
    return load_agent_text(AGENT.format(params=params))


@pytest.fixture
def no_daily_env(monkeypatch):
    for name in ("DAILY_ROOM_URL", "DAILY_TOKEN", "DAILY_API_KEY"):
        monkeypatch.delenv(name, raising=False)


def test_configs_validate_offline(monkeypatch):
    monkeypatch.setenv("ROOM", "https://example.daily.co/standup")
    a = agent('room_url: "${ROOM}", token: secret, join_timeout_secs: 5')
    assert a.transport.params.room_url == "https://example.daily.co/standup"
    assert agent().transport.params.room_url == ""  # the room may come from the environment at run time


async def test_running_without_a_room_or_key_says_what_is_missing(no_daily_env):
    with pytest.raises(DailyError) as e:
        await serve_daily(agent())
    for hint in ("room_url", "$DAILY_ROOM_URL", "api_key", "$DAILY_API_KEY"):
        assert hint in str(e.value)


async def test_room_and_token_come_from_the_environment(no_daily_env, monkeypatch):
    monkeypatch.setenv("DAILY_ROOM_URL", "https://example.daily.co/env-room")
    monkeypatch.setenv("DAILY_TOKEN", "env-token")
    assert await open_room(agent().transport.params) == Room("https://example.daily.co/env-room", "env-token")


@pytest.fixture
async def mock_daily_api(aiohttp_server_factory):
    """A local stand-in for Daily's REST API: /rooms and /meeting-tokens."""
    seen = []

    async def rooms(request):
        seen.append(("rooms", request.headers.get("Authorization"), await request.json()))
        if request.headers.get("Authorization") != "Bearer good-key":
            return web.json_response({"error": "authentication-error"}, status=401)
        return web.json_response({"name": "abc123", "url": "https://example.daily.co/abc123"})

    async def tokens(request):
        seen.append(("meeting-tokens", request.headers.get("Authorization"), await request.json()))
        return web.json_response({"token": "owner-token"})

    app = web.Application()
    app.router.add_post("/v1/rooms", rooms)
    app.router.add_post("/v1/meeting-tokens", tokens)
    url = await aiohttp_server_factory(app)
    return f"{url}/v1", seen


@pytest.fixture
async def aiohttp_server_factory():
    runners = []

    async def start(app):
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


async def test_room_is_created_with_an_api_key_on_mock_daily_api(no_daily_env, mock_daily_api):
    api_url, seen = mock_daily_api
    params = agent(f"api_key: good-key, api_url: {api_url}, room_expiry_secs: 600").transport.params
    room = await open_room(params)
    assert room == Room("https://example.daily.co/abc123", "owner-token")
    assert [s[0] for s in seen] == ["rooms", "meeting-tokens"]
    assert seen[1][2]["properties"]["room_name"] == "abc123"


async def test_refused_api_key_on_mock_daily_api_says_so(no_daily_env, mock_daily_api):
    api_url, _ = mock_daily_api
    params = agent(f"api_key: bad-key, api_url: {api_url}").transport.params
    with pytest.raises(DailyError, match="refused .*/rooms: 401"):
        await open_room(params)


async def test_unreachable_api_says_so(no_daily_env):
    params = agent("api_key: k, api_url: http://127.0.0.1:9/v1").transport.params
    with pytest.raises(DailyError, match="could not reach Daily's API"):
        await open_room(params)


async def test_join_that_never_answers_times_out_with_mock_daily_transport(no_daily_env):
    a = agent("room_url: https://example.daily.co/nowhere, join_timeout_secs: 0.5")
    never_joins = replace(
        a.transport.type, factory=lambda params, ctx: SyntheticTransport(SyntheticParams(), name="mock-daily")
    )
    a = replace(a, transport=replace(a.transport, type=never_joins))
    with pytest.raises(DailyError, match=r"could not join https://example.daily.co/nowhere: no answer .* 0.5 s"):
        await serve_daily(a)


def test_a_daily_agent_that_cannot_start_ends_with_one_line(tmp_path, no_daily_env):
    import subprocess
    import sys

    file = tmp_path / "room.yaml"
    file.write_text(AGENT.format(params="bot_name: helper"))
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "run", str(file)], capture_output=True,
                          text=True, timeout=120)
    out = (done.stdout + done.stderr).strip()
    assert done.returncode == 1, out
    assert "Traceback" not in out and out.splitlines()[-1].startswith("error: ") and "DAILY" in out, out
    assert len([line for line in out.splitlines() if line.startswith("error")]) == 1, out
