"""Capacity arithmetic for Redis: the store's operations per talking session per minute, and Redis's throughput here.

A framegraph server (in this process, the ``memory`` test agent: scripted
LLM, espeak) runs on a redis-server started here. First it runs with no
session for ``--seconds`` (heartbeats and housekeeping alone); then
``--sessions`` WebSocket clients each create a session, connect and say a
transcript every ``--turn-every`` seconds for ``--seconds``. Redis's own
``INFO commandstats`` counts the commands of each phase: the difference is
what the sessions cost. Then ``redis-benchmark`` measures what this Redis
answers per second with the same kinds of commands (pipelined 1, 50
clients). docs/deploy.md divides one by the other.

    .venv/bin/python bench/store_ops.py [--sessions 4] [--seconds 30] [--turn-every 5]
"""

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from redis_kit import redis_server  # noqa: E402
from test_server_resume import AGENT, send_transcript, ws_of  # noqa: E402


def commands(url: str) -> dict[str, int]:
    """Calls per Redis command so far (``INFO commandstats``)."""
    port = url.rsplit(":", 1)[1].split("/")[0]
    text = subprocess.run(["redis-cli", "-p", port, "INFO", "commandstats"], capture_output=True, text=True,
                          check=True).stdout
    return {m[1]: int(m[2]) for m in re.finditer(r"cmdstat_([\w|]+):calls=(\d+)", text)}


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0) and k != "info"}


async def talk(url: str, created: dict, seconds: float, every: float) -> int:
    from pipelines.client_protocol import messages as cm
    from transports.clients.talk import Talker

    turns = 0
    async with Talker(ws_of(url, created)) as talker:
        await talker.wait_for_message(cm.BOT_READY, timeout=30)
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            await send_transcript(talker, "my name is ada")
            turns += 1
            await asyncio.sleep(every)
    return turns


async def measure(url: str, args) -> tuple[dict[str, int], dict[str, int], int]:
    import httpx

    from pipelines.server.app import running
    from pipelines.validate import load_agent_text

    async with running(load_agent_text(AGENT), store=url, server_id="bench") as (base, _):
        before = commands(url)
        await asyncio.sleep(args.seconds)
        idle = delta(before, commands(url))
        before = commands(url)
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            created = [(await http.post("/sessions")).json() for _ in range(args.sessions)]
        turns = sum(await asyncio.gather(*(talk(base, c, args.seconds, args.turn_every) for c in created)))
        await asyncio.sleep(1.0)  # the last turns' writes
        busy = delta(before, commands(url))
    return idle, busy, turns


def throughput(url: str) -> dict[str, float]:
    """Requests per second ``redis-benchmark`` measures for the command kinds the store uses."""
    port = url.rsplit(":", 1)[1].split("/")[0]
    out = subprocess.run(["redis-benchmark", "-p", port, "-q", "-n", "50000", "-c", "50", "-t",
                          "set,get,hset,zadd,lpush,lrange_100"], capture_output=True, text=True, check=True).stdout
    lines = (re.match(r"\s*(\w+).*?: ([\d.]+) requests per second", line) for line in re.split(r"[\r\n]", out))
    return {m[1]: float(m[2]) for m in lines if m}


def main(args) -> None:
    from loguru import logger

    logger.remove()
    with tempfile.TemporaryDirectory(prefix="framegraph-store-ops-") as folder, redis_server(Path(folder)) as url:
        idle, busy, turns = asyncio.run(measure(url, args))
        minutes = args.seconds / 60
        idle_per_min = sum(idle.values()) / minutes
        session_ops = sum(busy.values()) - sum(idle.values())
        per_session_min = session_ops / args.sessions / minutes
        print(f"one server, no session: {idle_per_min:.0f} Redis commands a minute ({', '.join(f'{k} {v}' for k, v in sorted(idle.items()))})")
        print(f"{args.sessions} sessions, {turns} turns in {args.seconds:g} s: {sum(busy.values())} commands "
              f"({', '.join(f'{k} {v}' for k, v in sorted(busy.items()))})")
        print(f"per talking session (a turn every {args.turn_every:g} s): {per_session_min:.0f} commands a minute, "
              f"{session_ops / max(1, turns):.1f} per turn (connection and state changes included)")
        rates = throughput(url)
        print("redis-benchmark (50 clients, no pipelining): " + ", ".join(f"{k} {v:,.0f}/s" for k, v in rates.items()))
        slowest = min(rates.values())
        print(f"at the slowest kind ({slowest:,.0f}/s): {slowest * 60 / max(per_session_min, 1):,.0f} talking sessions "
              f"for one Redis core, before the servers' heartbeats ({idle_per_min:.0f}/min each)")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--turn-every", type=float, default=5.0)
    main(parser.parse_args())
