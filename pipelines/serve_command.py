"""``framegraph serve FILE...``: agents to browsers and programs, with sessions that survive drops.

``framegraph run`` serves an agent whose file names a servable transport
(webrtc, websocket); ``serve`` does it for any agents (the default assistant
names the file transport), keeping their sample rates, and takes the server's
limits, store and API key (docs/sessions.md, docs/security.md). The server
loads only when the command runs, so other commands stay quick.
"""

import asyncio
import os


def cmd_serve(args) -> int:
    from pipelines.cli import load_one
    from pipelines.server.app import servable_transports, served_on
    from pipelines.server.launch import serve
    from pipelines.server.options import ServerOptions

    if args.transport is not None and args.transport not in servable_transports():
        print(f"error: --transport {args.transport}: choose one of {', '.join(servable_transports())}")
        return 1
    agents = []
    for file in args.files:
        agent = load_one(file, args.overrides)
        if agent is None:
            return 1
        if args.transport is not None and agent.transport.type.name != args.transport:
            agent = served_on(agent, args.transport)
        elif agent.transport.type.servable is None:
            agent = served_on(agent, "webrtc")
        agents.append(agent)
    api_key = args.api_key or (os.environ.get(args.api_key_env) if args.api_key_env else None)
    if args.api_key_env and not api_key:
        print(f"error: --api-key-env {args.api_key_env}: that environment variable is not set")
        return 1
    user_keys = read_user_keys(args.user_keys) if args.user_keys else {}
    if user_keys is None:
        return 1
    options = ServerOptions(
        host=args.host, port=args.port, store=args.store, api_key=api_key, user_keys=user_keys,
        max_sessions=args.max_sessions, grace_s=args.grace, idle_timeout_s=args.idle_timeout,
        connect_timeout_s=args.connect_timeout, max_body_bytes=args.max_body_bytes,
        max_message_bytes=args.max_message_bytes, allowed_origins=args.allow_origin or [],
        allowed_hosts=args.allow_host or [], server_id=args.server_id, advertise_url=args.advertise_url,
        housekeeping_s=args.heartbeat, workers=args.workers or os.cpu_count() or 1,
    )
    try:
        asyncio.run(serve(agents, options))
    except KeyboardInterrupt:
        pass
    except (ValueError, RuntimeError) as e:
        print(f"error: {e}")
        return 1
    return 0


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise ValueError(text)
        return value

    parse.__name__ = kind.__name__
    return parse


def add_parser(subparsers) -> None:
    """Adds ``framegraph serve``."""
    from pipelines.cli import add_set_option, add_verbose_option
    from pipelines.server.options import ServerOptions

    d = ServerOptions()
    p = subparsers.add_parser(
        "serve",
        help="serve agents to browsers (webrtc) or programs (websocket), with sessions",
        description="Serve one or several agents (chosen by name at POST /sessions) over WebRTC or WebSocket, "
        "whatever transport their files name, with a REST API, resumable sessions and a dashboard.",
    )
    p.add_argument("files", metavar="FILE", nargs="+")
    p.add_argument("--transport", help="serve every agent over this transport (webrtc or websocket); default: "
                   "the one each file names when it can be served, else webrtc")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (default 7860)")
    p.add_argument("--store", help="sessions: a SQLite file path or redis://HOST:PORT/DB "
                   "(default: .framegraph/sessions-PORT.db next to the first FILE: one per port)")
    p.add_argument("--api-key", help="bearer key of the REST API (prefer --api-key-env: a command line is visible to other users)")
    p.add_argument("--api-key-env", metavar="VAR", help="name of the environment variable holding the API key "
                   "(Authorization: Bearer KEY on the REST API; media routes take the session's token)")
    p.add_argument("--user-keys", metavar="FILE", help='JSON file {"USER": "KEY", ...}: keys bound to users, '
                   "each opening sessions only as its user (docs/users.md)")
    p.add_argument("--max-sessions", type=_positive(int), default=d.max_sessions,
                   help=f"live sessions at most; more get 503 + Retry-After (default {d.max_sessions})")
    p.add_argument("--grace", type=_positive(float), default=d.grace_s, metavar="SECONDS",
                   help=f"a dropped session stays resumable this long (default {d.grace_s:g})")
    p.add_argument("--idle-timeout", type=_positive(float), metavar="SECONDS",
                   help="end a connected session with no turn for this long (default: never)")
    p.add_argument("--connect-timeout", type=_positive(float), default=d.connect_timeout_s, metavar="SECONDS",
                   help=f"end a session whose client never connects (default {d.connect_timeout_s:g})")
    p.add_argument("--max-body-bytes", type=_positive(int), default=d.max_body_bytes,
                   help=f"larger request bodies get 413 (default {d.max_body_bytes})")
    p.add_argument("--max-message-bytes", type=_positive(int), default=d.max_message_bytes,
                   help=f"larger WebSocket messages close the connection (default {d.max_message_bytes})")
    p.add_argument("--allow-origin", action="append", metavar="ORIGIN",
                   help="another origin (https://host:port) allowed to use the API and WebSockets (repeatable)")
    p.add_argument("--allow-host", action="append", metavar="NAME",
                   help="another Host name the server answers to (repeatable; default: loopback and --host)")
    p.add_argument("--server-id", help="this server's id in the store (default: host name and agent names; "
                   "give each of several servers on one machine its own)")
    p.add_argument("--heartbeat", type=_positive(float), default=d.housekeeping_s, metavar="SECONDS",
                   help=f"seconds between housekeeping rounds and heartbeats; on a shared Redis, a server silent "
                   f"for three rounds is taken for dead and its sessions taken over (default {d.housekeeping_s:g})")
    p.add_argument("--advertise-url", metavar="URL",
                   help="the URL other servers on the same Redis redirect this server's clients to "
                   "(default: http(s)://HOST:PORT as bound; give it when HOST is 0.0.0.0)")
    p.add_argument("--workers", type=_positive(int), metavar="N",
                   help="processes that run sessions, each on its own core, behind one front process that "
                   "places each new session on the least-loaded one (default: the machine's cores, "
                   f"{os.cpu_count()} here); 1 runs them in the server's own process (docs/scale.md)")
    add_verbose_option(p)
    add_set_option(p)
    p.set_defaults(func=cmd_serve)


def read_user_keys(path: str) -> dict[str, str] | None:
    """The ``--user-keys`` file's keys by user, or None (one error line printed) when it is not usable."""
    import json

    from pipelines.sessions.users import user_id_problem

    try:
        with open(path, encoding="utf-8") as f:
            keys = json.load(f)
    except (OSError, ValueError) as e:
        print(f"error: --user-keys {path}: {e}")
        return None
    if not isinstance(keys, dict):
        print(f'error: --user-keys {path}: must be a JSON object {{"USER": "KEY", ...}}')
        return None
    for user, key in keys.items():
        problem = user_id_problem(user) or (None if isinstance(key, str) and len(key) >= 16 else
                                            "key: must be text of at least 16 characters")
        if problem:
            print(f"error: --user-keys {path}: {user[:64]!r}: {problem}")
            return None
    return keys
