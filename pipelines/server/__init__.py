"""The agent server: sessions of any servable transport over a REST API, with limits and a dashboard.

What a servable transport module uses (``ServedParams``, ``peer_from``, the
``SDP_OFFER``/``SOCKET`` descriptors) is below the server, in
``pipelines.transport_contract``: transports never import the server.

One module each (docs/sessions.md, docs/security.md), among them:

- ``options``: ``ServerOptions``, every limit and its default.
- ``limits``: body-size and access (Host, Origin) middleware, the junk meter, the exposure warning.
- ``signalling``: SDP offer/answer models and the offer check.
- ``manager``: ``SessionManager``: admission bookkeeping and each session's life on this server.
- ``placement``: which server or worker process a new session goes to (by load level and room), and a session's owner.
- ``restore``: what a (re)connecting session gets back from the store (context, settings).
- ``session_graph``: a served session's graph: the YAML's, with RTVI first and the settings gate.
- ``sessions_routes``, ``runner_routes``, ``pages``, ``user_routes``, ``history_routes``: the routers
  (the sessions API; pipecat's runner routes; the page and the dashboard; users; history), sharing ``connecting``.
- ``app``: one server process: ``create_app``, the middleware, uvicorn's limits; ``running``, ``served_on``.
- ``launch``: ``serve`` (what ``framegraph serve`` and ``framegraph run`` await), the front of worker processes.
"""
