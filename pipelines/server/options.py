"""The server's settings: limits, timeouts, the store, the access model, with their defaults.

``framegraph serve`` fills them from its flags; ``framegraph run`` of a
webrtc/websocket agent uses the defaults with the transport's host and port.
docs/security.md lists every limit and what happens past it.
"""

from dataclasses import dataclass, field
from typing import Any

from pipelines.sessions.store import DEFAULT_GRACE_S


@dataclass
class ServerOptions:
    """What one server allows and where it keeps its sessions.

    Attributes:
        host: Address to listen on (None: the first agent's transport host).
        port: Port (None: the first agent's transport port; 0: any free port).
        store: ``--store``: a SQLite file path or a ``redis://`` URL; None: a
            SQLite file ``sessions-PORT.db`` in the first agent's folder's ``.framegraph``.
        api_key: Bearer key of the REST API (media routes take the session's token).
        user_keys: Keys bound to users (user id -> key): such a key opens sessions only as
            its user and reads only that user's records (docs/users.md).
        max_sessions: Live sessions (STARTING or connected) at most; past it, 503 + Retry-After.
        grace_s: How long a dropped session stays resumable.
        connect_timeout_s: A session whose client never connects ends after this.
        idle_timeout_s: A connected session with no completed turn for this long is ended (None: never).
        max_body_bytes: Largest request body; refused on its declared length,
            reading stopped at the limit when chunked.
        max_message_bytes: Largest WebSocket message the server takes (ASGI server limit).
        junk_per_s: Refused client messages a connection may send per second (averaged over a burst).
        junk_burst: Refusals a connection may send at once before it is closed.
        kept_events: Events each live session keeps (the newest).
        allowed_origins: Origins allowed for CORS and WebSockets (empty: the server's own).
        allowed_hosts: Host headers served (empty: loopback names and the listening address).
        keep_alive_s: Idle HTTP keep-alive connections are closed after this. Longer than common clients'
            own idle expiry (httpx: 5 s), so a client never sends on a connection the server is closing at
            that moment (a ReadError for the client); no longer than ``header_timeout_s``, which closes it anyway.
        header_timeout_s: A connection whose request headers are not complete this long after
            it opened (or after its last response) is closed.
        retry_after_s: The ``Retry-After`` a full server answers with.
        housekeeping_s: Seconds between rounds of grace expiry, gauges and heartbeat.
        server_id: This server's id, the owner of its sessions in the store. The
            default (host name and agent names) is the same after a restart, so
            the restarted server takes back the sessions its crash left live;
            give each of several servers on one machine its own.
        advertise_url: The URL other servers on the same Redis send this
            server's clients to (307); None: ``http(s)://HOST:PORT`` as bound.
        workers: Processes that run sessions (docs/scale.md); 1 runs them in
            the server's own process, more puts a front process before them.
        client_sessions_per_minute: New sessions one client (address) may create a minute; past it,
            429 + Retry-After (0: no limit). With ``workers`` > 1 each worker counts its own.
        client_unconnected_sessions: Sessions one client may hold created but not yet connected;
            past it, 429 + Retry-After (0: no limit).
        limit_loopback_clients: Apply the two limits above to loopback clients too (this
            machine's own users, a local proxy, tests and benchmarks are not limited by default).
        slots: The live-session count a worker process shares with the
            server's other workers (``pipelines.server.admission.Slots``, set
            by the worker pool); None: this process counts alone.
    """

    host: str | None = None
    port: int | None = None
    store: str | None = None
    api_key: str | None = None
    user_keys: dict[str, str] = field(default_factory=dict)
    max_sessions: int = 20
    grace_s: float = DEFAULT_GRACE_S
    connect_timeout_s: float = 20.0
    idle_timeout_s: float | None = None
    max_body_bytes: int = 256 * 1024
    max_message_bytes: int = 1024 * 1024
    junk_per_s: float = 20.0
    junk_burst: int = 200
    kept_events: int = 200
    allowed_origins: list[str] = field(default_factory=list)
    allowed_hosts: list[str] = field(default_factory=list)
    keep_alive_s: float = 10.0
    header_timeout_s: float = 10.0
    retry_after_s: int = 5
    housekeeping_s: float = 2.0
    server_id: str | None = None
    advertise_url: str | None = None
    workers: int = 1
    client_sessions_per_minute: int = 30
    client_unconnected_sessions: int = 5
    limit_loopback_clients: bool = False
    slots: Any = None
