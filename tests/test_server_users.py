"""Users through the real server: sessions opened as a user, keys bound to users, memory under concurrency."""

import asyncio
import json
import time

import httpx

from pipelines.server.app import running
from pipelines.validate import load_agent_text

WS = """
version: 1
name: tone-ws
transport: {type: websocket, port: 0}
processors:
  bot: {type: tone_reply, reply_secs: 1, stop_ms: 300}
pipeline: [input, bot, output]
"""
ADMIN = "admin-key-0123456789abcdef"
ANA_KEY = "ana-key-0123456789abcdef"
BO_KEY = "bo-key-0123456789abcdef"


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


async def test_sessions_opened_as_a_user_are_listed_under_them():
    async with running(load_agent_text(WS)) as (url, _), httpx.AsyncClient(base_url=url, timeout=10) as http:
        first = (await http.post("/sessions", json={"user": "ana"})).json()
        second = (await http.post("/sessions", json={"user": "ana"})).json()
        await http.post("/sessions", json={"user": "bo"})
        anonymous = (await http.post("/sessions", json={})).json()
        started = (await http.post("/start", json={"body": {"user": "ana"}})).json()
        user = (await http.get("/users/ana")).json()
        assert user["id"] == "ana" and user["sessions"] == 3
        listed = (await http.get("/users/ana/sessions")).json()["items"]
        assert [s["id"] for s in listed] == [first["id"], second["id"], started["sessionId"]]
        assert (await http.get(f"/sessions/{first['id']}")).json()["user"] == "ana"
        assert (await http.get(f"/sessions/{anonymous['id']}")).json()["user"] is None
        assert (await http.get("/users/nobody")).status_code == 404
        for bad in ["a b", "-x", "x" * 65, "é"]:
            response = await http.post("/sessions", json={"user": bad})
            assert response.status_code == 400 and "user" in response.json()["detail"], bad
        assert (await http.post("/start", json={"body": {"user": "a/b"}})).status_code == 400
        assert (await http.get("/users/a%20b")).status_code == 400
        assert (await http.get("/users/ana/usage", params={"since": 4.9e307})).status_code == 400  # was a 500
        assert (await http.get("/users/ana/usage", params={"since": 0})).json()["counts"] == {}


async def test_a_key_bound_to_a_user_opens_sessions_only_as_that_user():
    keys = {"ana": ANA_KEY, "bo": BO_KEY}
    async with running(load_agent_text(WS), api_key=ADMIN, user_keys=keys) as (url, _), \
            httpx.AsyncClient(base_url=url, timeout=10) as http:
        own = await http.post("/sessions", json={}, headers=bearer(ANA_KEY))
        assert own.status_code == 201
        assert (await http.get(f"/sessions/{own.json()['id']}", headers=bearer(ADMIN))).json()["user"] == "ana"
        assert (await http.post("/sessions", json={"user": "ana"}, headers=bearer(ANA_KEY))).status_code == 201
        other = await http.post("/sessions", json={"user": "bo"}, headers=bearer(ANA_KEY))
        assert other.status_code == 403 and "ana" in other.json()["detail"]
        assert (await http.post("/start", json={"body": {"user": "bo"}}, headers=bearer(ANA_KEY))).status_code == 403
        assert (await http.get("/users/ana", headers=bearer(ANA_KEY))).json()["sessions"] == 2
        assert (await http.get("/users/ana/memory", headers=bearer(ANA_KEY))).status_code == 200
        for path in ["/users/ana", "/users/ana/sessions", "/users/ana/memory"]:
            assert (await http.get(path, headers=bearer(BO_KEY))).status_code == 403, path
        assert (await http.patch("/users/ana/memory", json={"ops": [{"op": "set", "field": "x", "value": "y"}]},
                                 headers=bearer(BO_KEY))).status_code == 403
        for path in ["/sessions", "/health", "/metrics", f"/sessions/{own.json()['id']}", "/openapi.json"]:
            assert (await http.get(path, headers=bearer(ANA_KEY))).status_code == 403, path
        assert (await http.get("/users/ana")).status_code == 401
        assert (await http.get("/users/ana", headers=bearer("wrong-key-0123456789"))).status_code == 401
        assert (await http.get("/users/bo", headers=bearer(ADMIN))).status_code == 404  # bo never opened one
        assert (await http.post("/sessions", json={"user": "bo"}, headers=bearer(ADMIN))).status_code == 201


async def _four_writers_through(url: str, reader_url: str | None = None) -> None:
    """4 concurrent clients each add 100 words to ana's memory over PATCH: 400 words, no error."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        async def writer(n: int) -> list[int]:
            codes = []
            for i in range(100):
                ops = [{"op": "add", "field": "words", "value": f"w{n}-{i}"}, {"op": "incr", "field": "count"}]
                codes.append((await http.patch("/users/ana/memory", json={"ops": ops})).status_code)
            return codes

        codes = await asyncio.gather(*(writer(n) for n in range(4)))
        assert {c for cs in codes for c in cs} == {200}
        memory = (await http.get("/users/ana/memory", params={"history": 1})).json()
        assert len(memory["fields"]["words"]) == 400 and memory["fields"]["count"] == 400
        assert memory["version"] == 400 and len(memory["history"]) == 50
        assert [v["version"] for v in memory["history"]][:3] == [400, 399, 398]
    if reader_url is None:
        return
    async with httpx.AsyncClient(base_url=url, timeout=10) as a, httpx.AsyncClient(base_url=reader_url, timeout=10) as b:
        written = await a.patch("/users/ana/memory", json={"ops": [{"op": "set", "field": "level", "value": "B1"}]})
        start = time.monotonic()
        while (await b.get("/users/ana/memory")).json()["fields"].get("level") != "B1":
            assert time.monotonic() - start < 1.0, "the second server did not see the update within 1 s"
            await asyncio.sleep(0.01)
        assert written.json()["version"] == 401


async def test_four_concurrent_writers_lose_nothing_on_sqlite():
    async with running(load_agent_text(WS)) as (url, _):
        await _four_writers_through(url)


async def test_four_concurrent_writers_on_redis_and_a_second_server_sees_the_update(redis_url):
    agent = load_agent_text(WS)
    async with running(agent, store=redis_url, server_id="a") as (url_a, _), \
            running(agent, store=redis_url, server_id="b") as (url_b, _):
        await _four_writers_through(url_a, reader_url=url_b)


def test_user_keys_file_is_checked_with_one_line_naming_the_problem(tmp_path, capsys):
    from pipelines.serve_command import read_user_keys

    good = tmp_path / "keys.json"
    good.write_text(json.dumps({"ana": ANA_KEY}))
    assert read_user_keys(str(good)) == {"ana": ANA_KEY}
    for text, problem in [('["ana"]', "must be a JSON object"), (json.dumps({"a b": ANA_KEY}), "'a b': user: must be"),
                          ('{"ana": "short"}', "'ana': key: must be text of at least 16"), ("{", "Expecting")]:
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        assert read_user_keys(str(bad)) is None
        out = capsys.readouterr().out
        assert out.count("\n") == 1 and f"--user-keys {bad}" in out and problem in out, out
    assert read_user_keys(str(tmp_path / "missing.json")) is None
    assert "No such file" in capsys.readouterr().out
