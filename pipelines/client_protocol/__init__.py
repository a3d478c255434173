"""pipecat's client protocol (RTVI) as framegraph's served agents, clients and tests speak it.

One package below the transports and the server, so both reach it without
importing each other:

- ``messages``: the message names and helpers; no pipecat import (the
  ``talk`` client, the WebRTC client and the tests read the same names).
- ``rtvi``: the RTVI processor and observer a served graph carries.
- ``signals``: the output and input mixins of the network transports
  (stop at once on an interruption and tell the client; end the worker when
  the peer leaves).
"""
