"""The agent server: sessions of any servable transport over a REST API, with limits and a dashboard.

One module each (docs/sessions.md, docs/security.md):

What a servable transport module uses (``ServedParams``, ``peer_from``, the
``SDP_OFFER``/``SOCKET`` descriptors) is below the server, in
``pipelines.transport_contract``: transports never import the server.

- ``options``: ``ServerOptions``, every limit and its default.
- ``limits``: body-size and access (Host, Origin) middleware, the junk meter, the exposure warning.
- ``signalling``: SDP offer/answer models and the offer check.
- ``manager``: ``SessionManager``: admission, placement, workers, resume, persistence.
- ``routes``: the REST API, pipecat's runner routes, the page and the dashboard.
- ``app``: the app with its middleware and uvicorn's limits; ``serve``, ``running``, ``served_on``.
"""
