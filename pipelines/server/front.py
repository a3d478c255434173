"""The front process of ``framegraph serve --workers N``: one public address, requests proxied to workers.

Why a proxy (HTTP with httpx, WebSockets with the ``websockets`` client) and
not a handed-over socket (``socket.send_fds``): a worker is then the very
one-process server of ``--workers 1``, with its routes, limits and tests
unchanged, and every framework piece stays stock (uvicorn on both sides).
Handing over an accepted socket would need a worker to take an HTTP
connection in the middle of a request, which uvicorn has no API for, and a
keep-alive connection may carry requests for sessions on different workers.
The cost is one loopback hop for WebSocket audio (WebRTC media goes straight
to the worker's own UDP ports: only signalling passes here); docs/scale.md
has the figures.

Routing: a request about a session (``/sessions/{id}/...``) goes to the
worker that owns it (the store's ``owner``, remembered after the first look);
``POST /sessions``, ``/start``, ``/ws`` and a new ``/api/offer`` go to the
least-loaded worker; pipecat's ``/api/offer`` renegotiation and ICE go to the
worker that answered that peer connection; the rest (pages, ``/health``,
``/metrics`` of that worker) to the least-loaded one. The Host/Origin checks,
CORS and the body limit run here, before any proxying; API keys and session
tokens are checked by the worker, which gets the headers as they came.
"""

import asyncio
import json
import re

import httpx
import websockets
from loguru import logger

from pipelines.server.limits import CLIENT_HEADER
from pipelines.server.workers import Worker, WorkerPool
from pipelines.sessions.store import SessionNotFound, SessionStore

_SESSION_PATH = re.compile(r"^/sessions/([0-9A-Za-z_-]{1,64})(?:/|$)")
#: Headers not passed on: per hop, or checked here (origin) and rewritten by the client (host).
_HOP = {b"host", b"origin", b"connection", b"keep-alive", b"transfer-encoding", b"upgrade", b"content-length",
        b"te", b"trailer", b"proxy-authorization", b"sec-websocket-key", b"sec-websocket-version",
        b"sec-websocket-extensions", b"sec-websocket-protocol", CLIENT_HEADER.encode()}
_HOP_OUT = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}
#: Sessions and peer connections whose worker the front remembers (the oldest forgotten first;
#: a forgotten session's owner is read from the store again).
REMEMBERED = 10_000
#: How long a request waits for its worker while that worker is started again.
WAIT_FOR_WORKER_S = 60.0


class Front:
    """The ASGI app of the front process: starts the pool (lifespan) and proxies to its workers."""

    def __init__(self, pool: WorkerPool, store: SessionStore):
        self.pool = pool
        self.store = store
        self._owners: dict[str, int] = {}
        self._peers: dict[str, int] = {}
        self._http: httpx.AsyncClient | None = None

    def advertise(self, url: str) -> None:
        """The front's URL as bound: what the workers advertise to other servers (unless given)."""
        self.pool.advertise(url)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        if scope["type"] == "http":
            return await self._proxy_http(scope, receive, send)
        if scope["type"] == "websocket":
            return await self._proxy_ws(scope, receive, send)

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.store.open()
                    await self.pool.start()
                    self._http = httpx.AsyncClient(timeout=60, limits=httpx.Limits(
                        max_connections=1000, keepalive_expiry=self._keepalive_expiry()))
                except Exception as e:
                    await self.pool.stop()
                    await send({"type": "lifespan.startup.failed", "message": f"{e.__class__.__name__}: {e}"})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.pool.stop()
                if self._http is not None:
                    await self._http.aclose()
                await self.store.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- routing ---------------------------------------------------------------

    async def route(self, path: str, body: bytes = b"") -> Worker:
        """The worker a request for ``path`` (with ``body``) goes to."""
        match = _SESSION_PATH.match(path)
        if match:
            worker = await self._owner(match[1])
            if worker is not None:
                return worker
        if path == "/api/offer" and body:
            pc_id = _field(body, "pc_id")
            if pc_id in self._peers:
                return self.pool.workers[self._peers[pc_id]]
        return self.pool.least_loaded()

    async def _owner(self, session_id: str) -> Worker | None:
        slot = self._owners.get(session_id)
        if slot is not None:
            return self.pool.workers[slot]
        try:
            session = await self.store.get(session_id)
        except SessionNotFound:
            return None
        worker = self.pool.owning(session.owner)
        if worker is not None:
            _remember(self._owners, session_id, worker.slot)
        return worker

    def _learn(self, worker: Worker, path: str, status: int, content: bytes) -> None:
        """Remembers which worker holds a session or peer connection it just created."""
        if status >= 300:
            return
        if path in ("/sessions", "/start"):
            session_id = _field(content, "id") or _field(content, "sessionId")
            if session_id:
                _remember(self._owners, session_id, worker.slot)
        elif path.endswith("/offer"):
            pc_id = _field(content, "pc_id")
            if pc_id:
                _remember(self._peers, pc_id, worker.slot)

    async def _ready(self, worker: Worker) -> bool:
        try:
            await asyncio.wait_for(worker.ready.wait(), WAIT_FOR_WORKER_S)
        except TimeoutError:
            return False
        return True

    # -- HTTP ------------------------------------------------------------------

    async def _proxy_http(self, scope, receive, send) -> None:
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        worker = await self.route(path, bytes(body))
        if not await self._ready(worker):
            return await _respond(send, 503, b'{"detail":"the worker is restarting; try again"}', retry=True)
        headers = _passed_headers(scope)
        url = worker.url + scope.get("raw_path", path.encode()).decode("latin-1")
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        try:
            response = await self._request(scope["method"], url, headers, bytes(body))
        except httpx.HTTPError as e:
            logger.warning(f"worker {worker.server_id}: {scope['method']} {path}: {e.__class__.__name__}")
            return await _respond(send, 503, b'{"detail":"the worker did not answer; try again"}', retry=True)
        self._learn(worker, path, response.status_code, response.content)
        out = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.multi_items()
               if k.lower() not in _HOP_OUT]
        out.append((b"content-length", str(len(response.content)).encode()))
        await send({"type": "http.response.start", "status": response.status_code, "headers": out})
        await send({"type": "http.response.body", "body": response.content})

    def _keepalive_expiry(self) -> float:
        """How long the front keeps an idle connection to a worker: half the time the worker keeps it.

        A worker closes an idle keep-alive connection after ``keep_alive_s``
        (or ``header_timeout_s``, if shorter). With the same expiry on both
        sides, the front sometimes sent a request on a connection the worker
        was closing that instant, and got ``ReadError`` (503 "the worker did
        not answer"); closing first on this side leaves no such moment.
        """
        options = self.pool.worker_options
        return min(options.keep_alive_s, options.header_timeout_s) / 2

    async def _request(self, method: str, url: str, headers: list, body: bytes) -> httpx.Response:
        """The worker's response; sent again once if a kept-alive connection was closed under it.

        With the shorter expiry above this is rare, but a worker's busy loop
        can still close a connection the front has just picked. The error then
        comes before any response: the worker closed the connection unread and
        the request never ran, so it is sent again (once) on a fresh connection.
        A worker that dies in the middle of a request fails the second try too
        (503); at worst a POST /sessions made twice leaves a session that ends
        with the connect timeout.
        """
        try:
            return await self._http.request(method, url, headers=headers, content=body)
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as e:
            logger.debug(f"{method} {url}: {e.__class__.__name__} on a kept-alive connection; sending it again")
            return await self._http.request(method, url, headers=headers, content=body)

    # -- WebSocket ---------------------------------------------------------------

    async def _proxy_ws(self, scope, receive, send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        worker = await self.route(scope["path"])
        if not await self._ready(worker):
            return await send({"type": "websocket.close", "code": 1013, "reason": "the worker is restarting"})
        url = f"ws://127.0.0.1:{worker.port}{scope['path']}"
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        headers = _passed_headers(scope)
        try:
            upstream = await websockets.connect(url, additional_headers=headers, subprotocols=scope.get("subprotocols") or None,
                                                max_size=None, ping_interval=None, open_timeout=30, compression=None)
        except websockets.InvalidStatus:  # the worker refused the handshake (token, API key): so do we (403)
            return await send({"type": "websocket.close", "code": 1008})
        except (OSError, TimeoutError, websockets.WebSocketException) as e:
            logger.warning(f"worker {worker.server_id}: WebSocket {scope['path']}: {e.__class__.__name__}")
            return await send({"type": "websocket.close", "code": 1013, "reason": "the worker did not answer"})
        await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})
        await _relay(upstream, receive, send)


async def _relay(upstream, receive, send) -> None:
    """Copies messages both ways until one side closes, then closes the other with the same code."""
    client_gone = False

    async def from_client():
        nonlocal client_gone
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                client_gone = True
                await upstream.close(code=message.get("code", 1000) if message.get("code", 1000) in (1000, 1001) else 1000)
                return
            data = message.get("bytes")
            await upstream.send(data if data is not None else message.get("text", ""))

    async def from_worker():
        try:
            async for data in upstream:
                key = "bytes" if isinstance(data, bytes) else "text"
                await send({"type": "websocket.send", key: data})
        except websockets.ConnectionClosed:
            pass

    tasks = [asyncio.create_task(from_client()), asyncio.create_task(from_worker())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if not client_gone:
        code = upstream.close_code or 1000
        try:
            await send({"type": "websocket.close", "code": code if code != 1006 else 1011,
                        "reason": (upstream.close_reason or "")[:120]})
        except Exception:  # the client went away meanwhile
            pass
    await upstream.close()


def _passed_headers(scope) -> list[tuple[str, str]]:
    """The request's headers for the worker: per-hop ones dropped, the client's address added (its limits)."""
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"] if k not in _HOP]
    client = (scope.get("client") or (None,))[0]
    if client:
        headers.append((CLIENT_HEADER, client))
    return headers


async def _respond(send, status: int, body: bytes, *, retry: bool = False) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if retry:
        headers.append((b"retry-after", b"5"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _remember(memory: dict[str, int], key: str, slot: int) -> None:
    memory[key] = slot
    if len(memory) > REMEMBERED:
        memory.pop(next(iter(memory)))


def _field(body: bytes, name: str) -> str | None:
    """A string field of a JSON object body, or None."""
    try:
        value = json.loads(body).get(name)
    except (ValueError, AttributeError, RecursionError):  # deeply nested JSON is the worker's to refuse (400)
        return None
    return value if isinstance(value, str) else None
