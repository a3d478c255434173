"""Python clients of framegraph's transports, for tests, benchmarks and the command line.

- ``talk``: a WebSocket client (pipecat protobuf frames) and ``framegraph talk``.
- ``webrtc``: an aiortc peer that talks to the WebRTC transport like the web page.
- ``chromium``: headless Chromium driven over the DevTools protocol, to run the web page.
"""
