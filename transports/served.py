"""Transports the server builds once per connecting client (webrtc, websocket).

The server accepts a connection, then builds the agent with the connection
placed in ``BuildContext.shared[PEER_KEY]``; the transport factory takes it
from there.
"""

from typing import Any

#: Key of ``BuildContext.shared`` holding the accepted connection.
PEER_KEY = "peer_connection"


def peer_from(ctx: Any, transport_type: str) -> Any:
    """The connection the server accepted for this participant.

    Raises:
        RuntimeError: when the transport is built outside the server, naming
            the command that serves it.
    """
    peer = ctx.shared.get(PEER_KEY)
    if peer is None:
        raise RuntimeError(
            f"the {transport_type} transport is built for each connecting client by the server: "
            "start the agent with `framegraph run FILE`"
        )
    return peer


async def serve(agent: Any, options: Any) -> None:
    """``TypeInfo.serve`` of the served transports: ``framegraph run`` awaits it."""
    from pipelines.server import serve as serve_agent

    await serve_agent(agent, options)
