"""Transports the server builds once per connecting client (webrtc, websocket).

The server accepts a connection, then builds the agent with the connection
placed in ``BuildContext.shared[PEER_KEY]``; the transport factory takes it
from there.
"""

from dataclasses import replace
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


def with_peer(component: Any, peer: Any) -> Any:
    """A copy of a transport ``Component`` whose factory finds ``peer`` in ``ctx.shared``.

    Pass it to ``build_agent(agent, transport=...)``.
    """
    factory = component.type.factory

    def factory_with_peer(params, ctx):
        ctx.shared[PEER_KEY] = peer
        return factory(params, ctx)

    return replace(component, type=replace(component.type, factory=factory_with_peer))


async def serve(agent: Any, options: Any) -> None:
    """``TypeInfo.serve`` of the served transports: ``framegraph run`` awaits it."""
    from pipelines.server import serve as serve_agent

    await serve_agent(agent, options)
