"""A plain pipecat bot for bench/browser.py: pipecat's dev runner, its SmallWebRTC transport, framegraph's processors.

The agent's processors (VAD, turn, STT, LLM, TTS) are built from the config
as framegraph builds them, but without framegraph's interruption guarantee
and with pipecat's own ``SmallWebRTCTransport`` and defaults, served by
pipecat's runner (``POST /api/offer``): what a pipecat user writes by hand.

    python bench/plain_webrtc_bot.py -t webrtc --host 127.0.0.1 --port 7861
    FRAMEGRAPH_PLAIN_CONFIG=configs/other.yaml ... (default: configs/assistant.yaml)
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipecat.runner.run import main  # noqa: E402
from transport_latency import plain_webrtc, with_factory  # noqa: E402

from pipelines.builder import build_agent  # noqa: E402
from pipelines.client_protocol.rtvi import for_client  # noqa: E402
from pipelines.runner import run_worker  # noqa: E402
from pipelines.server.app import served_on  # noqa: E402
from pipelines.validate import load_agent  # noqa: E402

CONFIG = Path(os.environ.get("FRAMEGRAPH_PLAIN_CONFIG", Path(__file__).resolve().parents[1] / "configs" / "assistant.yaml"))
AGENT = with_factory(served_on(load_agent(CONFIG), "webrtc"), plain_webrtc)


async def bot(runner_args):
    """One participant: the agent's graph on pipecat's SmallWebRTC transport around the runner's connection."""
    await run_worker(build_agent(AGENT, peer=runner_args.webrtc_connection, guard_interruptions=False,
                                       additions=(for_client,)).worker())


if __name__ == "__main__":
    main()
