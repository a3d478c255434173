"""``framegraph serve FILE``: any agent, to browsers (webrtc) or programs (websocket).

``framegraph run`` serves an agent whose file names the webrtc or websocket
transport; ``serve`` does it for any agent (the default assistant names the
file transport), keeping its sample rates. The server loads only when the
command runs, so other commands stay quick.
"""

import asyncio


def cmd_serve(args) -> int:
    from pipelines.cli import load_one
    from pipelines.server import serve, served_on

    agent = load_one(args.file, args.overrides)
    if agent is None:
        return 1
    if agent.transport.type.name != args.transport:
        agent = served_on(agent, args.transport)
    try:
        asyncio.run(serve(agent, args))
    except KeyboardInterrupt:
        pass
    return 0


def add_parser(subparsers) -> None:
    """Adds ``framegraph serve``."""
    from pipelines.cli import add_set_option

    p = subparsers.add_parser(
        "serve",
        help="serve any agent to browsers (webrtc) or programs (websocket)",
        description="Serve an agent over WebRTC (the web page) or WebSocket, whatever transport its file names.",
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument("--transport", choices=["webrtc", "websocket"], default="webrtc", help="default: webrtc")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (default 7860)")
    add_set_option(p)
    p.set_defaults(func=cmd_serve)
