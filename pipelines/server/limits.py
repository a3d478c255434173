"""The server's guards against hostile or careless clients, as ASGI middleware and a meter.

- ``BodyLimit``: a body over the limit is refused with 413 on its declared
  ``Content-Length`` before a byte is read, and a chunked body is read only up
  to the limit, so a large upload never grows the server.
- ``AccessGuard``: the ``Host`` header must name the server (a DNS-rebinding
  page reaches the server under a foreign name), and a browser's ``Origin``
  must be the server's own or an allowed one, for WebSockets and for
  requests that change something (a page elsewhere may post a ``text/plain``
  offer without a CORS preflight).
- ``JunkMeter``: each connection's refused messages go through a token
  bucket; they are counted, logged as one summary line at most every few
  seconds, and a connection that keeps sending junk is closed.
"""

import ipaddress
import json
import time
from collections.abc import Iterable

from loguru import logger

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")


class BodyTooLarge(Exception):
    """A request body went past the limit while it was read."""


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
        received = 0
        started = False

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            logger.warning(f"stopped reading a chunked body to {scope['path']} at {self.max_bytes} bytes")
            if not started:
                await _refuse(send, 413, f"request body over {self.max_bytes} bytes")


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
