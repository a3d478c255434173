"""The server's guards against hostile or careless clients, as ASGI middleware and a meter.

- ``BodyLimit``: a body over the limit is refused with 413 on its declared
  ``Content-Length`` before a byte is read, and a chunked body is read only up
  to the limit, so a large upload never grows the server.
- ``AccessGuard``: the ``Host`` header must name the server (a DNS-rebinding
  page reaches the server under a foreign name), and a browser's ``Origin``
  must be the server's own or an allowed one, for WebSockets and for
  requests that change something (a page elsewhere may post a ``text/plain``
  offer without a CORS preflight).
- ``ClientLimits``: each client (its address) may create so many sessions a
  minute and hold so many created but not yet connected; past either, 429
  with ``Retry-After``, so that one client cannot take every slot.
- ``JunkMeter``: each connection's refused messages go through a token
  bucket; they are counted, logged as one summary line at most every few
  seconds, and a connection that keeps sending junk is closed.
"""

import asyncio
import ipaddress
import json
import time
from collections import deque
from collections.abc import Callable, Iterable

from loguru import logger

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")


class BodyLimit:
    """ASGI middleware: 413 for a request body over ``max_bytes``, read no further than that."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = _header(scope, b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > self.max_bytes
            except ValueError:
                return await _refuse(send, 400, "malformed Content-Length")
            if too_large:
                logger.warning(f"refused a {declared}-byte body to {scope['path']} (limit {self.max_bytes})")
                return await _refuse(send, 413, f"request body over {self.max_bytes} bytes")
        if declared is not None:
            return await self.app(scope, receive, send)
        # No declared length (chunked): read at most the limit before the app sees any of it.
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                logger.warning(f"stopped reading a chunked body to {scope['path']} at {self.max_bytes} bytes")
                return await _refuse(send, 413, f"request body over {self.max_bytes} bytes")
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class AccessGuard:
    """ASGI middleware: serve only the allowed ``Host`` names and browser ``Origin``s.

    Args:
        app: The wrapped ASGI app.
        allowed_hosts: Host names (without port) served; "*" allows any.
        allowed_origins: Extra origins (``scheme://host[:port]``) allowed
            besides the server's own (an origin whose host:port is the
            request's ``Host``); "*" allows any.
    """

    #: Methods that only read: a foreign page may read nothing of ours anyway (no CORS grant).
    SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

    def __init__(self, app, allowed_hosts: Iterable[str], allowed_origins: Iterable[str]):
        self.app = app
        self.allowed_hosts = {h.lower() for h in allowed_hosts}
        self.allowed_origins = {o.lower().rstrip("/") for o in allowed_origins}

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        host = (_header(scope, b"host") or b"").decode("latin-1").lower()
        if not self.host_allowed(host):
            logger.warning(f"refused a request for host {host[:80]!r} (DNS rebinding guard)")
            return await _deny(scope, send, "unknown host")
        origin = _header(scope, b"origin")
        checks_origin = scope["type"] == "websocket" or scope.get("method") not in self.SAFE_METHODS
        if origin is not None and checks_origin and not self.origin_allowed(origin.decode("latin-1"), host):
            logger.warning(f"refused a {scope['type']} request from origin {origin[:80]!r}")
            return await _deny(scope, send, "origin not allowed")
        return await self.app(scope, receive, send)

    def host_allowed(self, host: str) -> bool:
        """Whether ``host`` (a Host header, maybe with a port) names this server."""
        if "*" in self.allowed_hosts:
            return True
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return name in self.allowed_hosts or name in LOOPBACK_NAMES

    def origin_allowed(self, origin: str, host: str) -> bool:
        """Whether a browser page at ``origin`` may use the server reached as ``host``."""
        origin = origin.lower().rstrip("/")
        if "*" in self.allowed_origins or origin in self.allowed_origins:
            return True
        return origin.split("://", 1)[-1] == host


class JunkMeter:
    """One connection's refused messages: a token bucket, a count and a summary log line.

    ``refused()`` costs a few attribute updates; the log gets at most one
    line per ``log_every_s`` per connection, with the count since the last.
    """

    def __init__(self, who: str, *, per_s: float, burst: int, log_every_s: float = 5.0):
        self.who = who
        self.per_s = per_s
        self.burst = burst
        self.log_every_s = log_every_s
        self.total = 0
        self._tokens = float(burst)
        self._last = time.monotonic()
        self._logged_at = 0.0
        self._unlogged = 0

    def refused(self, reason: str) -> bool:
        """Counts one refusal; returns True when the connection has sent too much junk and must be closed."""
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.per_s) - 1
        self._last = now
        self.total += 1
        self._unlogged += 1
        if now - self._logged_at >= self.log_every_s:
            logger.warning(f"{self.who}: refused {self._unlogged} client message(s); latest: {reason[:200]}")
            self._logged_at, self._unlogged = now, 0
        return self._tokens < 0


#: The header in which the ``--workers`` front tells a worker the client's address (a worker sees only the front's).
CLIENT_HEADER = "x-framegraph-client"


class TooManySessions(Exception):
    """A client is over its limit of new or unconnected sessions; ``retry_after_s`` says when to try again."""

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ClientLimits:
    """Per-client limits on new sessions: how many a minute, and how many created but not yet connected.

    A client is its address (the server has one API key, which all its
    clients share, so the key cannot tell them apart). Loopback clients are
    not limited unless ``limit_loopback``: they are this machine's own users,
    proxies, tests and benchmarks.

    Args:
        per_minute: New sessions one client may create in any 60 seconds (0: no limit).
        unconnected: Sessions one client may hold created and not yet connected (0: no limit).
        limit_loopback: Limit loopback clients too.
    """

    #: Clients remembered at most; past it, those with nothing recent are forgotten first.
    MAX_CLIENTS = 10_000

    def __init__(self, per_minute: int, unconnected: int, *, limit_loopback: bool = False):
        self.per_minute = per_minute
        self.unconnected = unconnected
        self.limit_loopback = limit_loopback
        self._created: dict[str, deque[float]] = {}
        self._pending: dict[str, list[str]] = {}

    def admit(self, client: str | None, waiting: Callable[[str], bool]) -> object | None:
        """Admits one new session of ``client`` or raises ``TooManySessions``; call ``settle`` after.

        The admission is counted at once (before the caller's first ``await``),
        so concurrent requests of one client cannot all pass the check.

        Args:
            client: The client's address (None: unknown, not limited).
            waiting: Whether a session id this client created is still waiting for its connection.

        Returns:
            A reservation for ``settle`` (None when the client is not limited).
        """
        if not self._limited(client):
            return None
        now = time.monotonic()
        created = self._created.get(client, deque())
        while created and now - created[0] >= 60.0:
            created.popleft()
        pending = self._pending[client] = [p for p in self._pending.get(client, [])
                                           if not isinstance(p, str) or waiting(p)]
        if self.unconnected and len(pending) >= self.unconnected:
            raise TooManySessions(f"this client has {len(pending)} sessions waiting for their connection, its "
                                  "limit; connect them or wait for them to expire", 5)
        if self.per_minute and len(created) >= self.per_minute:
            retry = max(1, int(60.0 - (now - created[0])) + 1)
            raise TooManySessions(f"this client created {len(created)} sessions in the last minute, its limit; "
                                  f"try again in {retry} s", retry)
        if client not in self._created and len(self._created) >= self.MAX_CLIENTS:
            self._forget_idle()
        self._created.setdefault(client, created).append(now)
        reservation = object()
        pending.append(reservation)
        return reservation

    def settle(self, client: str | None, reservation: object | None, session_id: str | None) -> None:
        """Ends ``admit``'s reservation: ``session_id`` now waits for its connection (None: none was made)."""
        pending = self._pending.get(client)
        if reservation is None or pending is None or reservation not in pending:
            return
        index = pending.index(reservation)
        if session_id is None:
            del pending[index]
        else:
            pending[index] = session_id

    def _limited(self, client: str | None) -> bool:
        if client is None or not (self.per_minute or self.unconnected):
            return False
        return self.limit_loopback or not _is_loopback(client)

    def _forget_idle(self) -> None:
        now = time.monotonic()
        for client in [c for c, times in self._created.items() if not times or now - times[-1] >= 60.0]:
            self._created.pop(client, None)
            self._pending.pop(client, None)
        while len(self._created) >= self.MAX_CLIENTS:  # all recent: the oldest goes
            client = next(iter(self._created))
            self._created.pop(client)
            self._pending.pop(client, None)


def client_address(scope: dict) -> str | None:
    """The address of the client of an ASGI request: the front's ``CLIENT_HEADER`` when the front sent it."""
    peer = (scope.get("client") or (None,))[0]
    forwarded = _header(scope, CLIENT_HEADER.encode())
    if forwarded is not None and peer is not None and _is_loopback(peer):
        return forwarded.decode("latin-1")[:64]
    return peer


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def exposure_warning(host: str, *, tls: bool, api_key: bool) -> str | None:
    """A warning when the server listens beyond loopback without TLS or without an API key, else None."""
    try:
        loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if loopback:
        return None
    missing = [what for what, present in (("TLS", tls), ("an API key (--api-key)", api_key)) if not present]
    if not missing:
        return None
    return (
        f"listening on {host}, beyond this machine, without {' or '.join(missing)}: "
        "anyone who can reach it can talk to the agent and read its sessions"
    )


def _header(scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value
    return None


async def _refuse(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close")],
    })
    await send({"type": "http.response.body", "body": body})


async def _deny(scope, send, detail: str) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": detail})
    else:
        await _refuse(send, 403, detail)


def timely_http_protocol(header_timeout_s: float):
    """uvicorn's h11 protocol, closing a connection whose request headers do not arrive in time.

    uvicorn closes an idle keep-alive connection after a response
    (``timeout_keep_alive``) but waits forever for the first request's
    headers, and any byte resets its idle timer: a client that opens
    connections and sends nothing, or a header a byte at a time, would hold
    them for good. This arms a timer when a connection opens and after each
    response; the next request's complete headers (or a WebSocket upgrade)
    disarm it.
    """
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class TimelyH11Protocol(H11Protocol):
        _header_timer = None
        _armed_cycle = None

        def connection_made(self, transport):
            super().connection_made(transport)
            self._arm()

        def _arm(self) -> None:
            self._disarm()
            self._armed_cycle = self.cycle
            self._header_timer = self.loop.call_later(header_timeout_s, self._too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _too_slow(self) -> None:
            self._header_timer = None
            if self.cycle is self._armed_cycle and not self.transport.is_closing():
                logger.info(f"closed a connection from {self.client} whose request did not arrive within "
                            f"{header_timeout_s:g} s")
                self.transport.close()

        def handle_events(self) -> None:
            super().handle_events()
            if self.cycle is not self._armed_cycle:
                self._disarm()

        def handle_websocket_upgrade(self, event) -> None:
            self._disarm()
            super().handle_websocket_upgrade(event)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

    return TimelyH11Protocol


class GuardedSocket:
    """A WebSocket as handed to a transport, with the server's bound on what one connection may cost.

    It passes everything through to the accepted socket except ``receive()``,
    which yields to the event loop every ``yield_every`` messages (a client's
    queued flood is otherwise read in one go, with nothing else running), and
    which reports a disconnect at once after ``close()`` (the server closing
    a connection that sent too much junk), so no queued message is read after.
    """

    def __init__(self, websocket, *, yield_every: int = 20):
        self._websocket = websocket
        self._yield_every = yield_every
        self._received = 0
        self._closed_code: int | None = None

    async def receive(self) -> dict:
        if self._closed_code is not None:
            return {"type": "websocket.disconnect", "code": self._closed_code}
        self._received += 1
        if self._received % self._yield_every == 0:
            await asyncio.sleep(0)
        if self._closed_code is not None:
            return {"type": "websocket.disconnect", "code": self._closed_code}
        return await self._websocket.receive()

    async def close(self, code: int = 1008, reason: str = "") -> None:
        """Closes the connection; the transport sees a disconnect with ``code`` on its next read."""
        if self._closed_code is None:
            self._closed_code = code
            try:
                await self._websocket.close(code=code, reason=reason)
            except RuntimeError:  # already closed by the client
                pass

    def __getattr__(self, name: str):
        return getattr(self._websocket, name)
