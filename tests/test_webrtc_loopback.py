"""The webrtc transport on loopback, with a real aiortc peer posting to the server.

The agent is ``tone_reply`` (loud input is speech, the bot answers with a
tone), so these tests need no speech models and run in seconds.
"""

import asyncio
import gc
import re
import signal
import sys
import time
import weakref

import aiohttp
import pytest
from conftest import ROOT
from transport_kit import wait_until

from pipelines.client_protocol import messages as cm
from pipelines.errors import ConfigErrors
from pipelines.server.app import running
from pipelines.sessions.model import SessionState
from pipelines.validate import load_agent, load_agent_text
from processors.tone import tone
from transports.clients.webrtc import WebRTCPeer

AGENT = """
version: 1
name: tone
transport: {type: webrtc, port: 0, peer_timeout_secs: 2, max_message_bytes: 2000}
processors:
  bot: {type: tone_reply, reply_secs: 3, stop_ms: 300}
pipeline: [input, bot, output]
"""

SPEECH = tone(0.3, 16000, 300, 10000)
BARGE_IN = tone(0.15, 16000, 300, 10000)


def only_session(server):
    (session,) = server.sessions.values()
    return session


async def test_peer_talks_barges_in_and_closes():
    async with running(load_agent_text(AGENT)) as (url, server):
        peer = WebRTCPeer()
        await peer.connect(url)
        await peer.wait_for_message(cm.BOT_READY, timeout=10)
        session = only_session(server)
        await wait_until(lambda: session.state == SessionState.ACTIVE, 5, "connected event")

        said = time.monotonic() + peer.say(SPEECH)
        await peer.wait_for_loud(timeout=5, after=said)
        assert (await peer.wait_for_message(cm.USER_TRANSCRIPTION, 2))["data"]["final"] is True
        assert (await peer.wait_for_message(cm.BOT_TTS_TEXT, 2))["data"]["text"] == "beep"

        await asyncio.sleep(0.5)  # the bot is mid-answer
        barged = time.monotonic()
        peer.say(BARGE_IN)
        await peer.wait_for_message(cm.BOT_INTERRUPTED, timeout=3, after=barged)
        await asyncio.sleep(0.5)
        interrupted_at = session.built.transport.output().interrupted_at
        assert interrupted_at > barged
        # Told at once, the peer plays (next to) nothing of the cut-off answer;
        # plain pipecat plays about 140 ms (bench/transport_latency.py).
        assert peer.stale_audio(interrupted_at) <= 0.06
        # The barge-in is a turn of its own: the bot answers it.
        await peer.wait_for_message(cm.BOT_STARTED_SPEAKING, timeout=3, after=interrupted_at)

        # Bad messages are refused and the agent goes on.
        peer.send("not json {")
        peer.send({"label": "rtvi-ai", "type": "client-message", "data": "x" * 3000})
        await wait_until(lambda: any(e["event"] == "refused" for e in session.events), 3, "refused event")
        said = time.monotonic() + peer.say(SPEECH)
        await peer.wait_for_message(cm.BOT_STARTED_SPEAKING, timeout=5, after=said)

        await peer.close()
        await wait_until(lambda: session.state == SessionState.DISCONNECTED, 10, "worker end after a clean close")
        assert [e["event"] for e in session.events][-2:] == ["closed", "ended"]


async def test_vanished_peer_is_reported_and_its_worker_ends():
    async with running(load_agent_text(AGENT)) as (url, server):
        peer = WebRTCPeer()
        await peer.connect(url)
        session = only_session(server)
        await wait_until(lambda: session.state == SessionState.ACTIVE, 5, "connected event")
        await asyncio.sleep(1.5)  # the server has heard pings
        peer.vanish()
        # peer_timeout_secs is 2; pings stop counting after 3 s of silence.
        await wait_until(lambda: session.state == SessionState.DISCONNECTED, 15, "worker end after the peer vanished")
        dropped = [e for e in session.events if e["event"] == "dropped"]
        assert dropped and "nothing heard" in dropped[0]["detail"]
        await peer.close()


async def test_a_peer_back_from_a_dropped_connection_resumes_its_session():
    async with running(load_agent_text(AGENT.replace("peer_timeout_secs: 2", "peer_timeout_secs: 10"))) as (url, server):
        peer = WebRTCPeer()
        await peer.connect(url)
        session = only_session(server)
        await wait_until(lambda: session.state == SessionState.ACTIVE, 5, "connected event")
        await asyncio.sleep(1.5)
        peer.vanish()
        await asyncio.sleep(1.0)  # the network is down for a moment

        back = WebRTCPeer()
        await back.connect(url, resume=peer.pc_id)
        await wait_until(lambda: any(e["event"] == "resumed" for e in session.events), 10, "resumed event")
        said = time.monotonic() + back.say(SPEECH)
        await back.wait_for_loud(timeout=5, after=said)
        assert list(server.sessions) == [session.id] and session.state == SessionState.ACTIVE
        await back.close()
        await wait_until(lambda: session.state == SessionState.DISCONNECTED, 10, "worker end after a clean close")
        await peer.close()


async def test_offer_endpoint_refuses_bad_requests_and_keeps_serving():
    async with running(load_agent_text(AGENT)) as (url, server):
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{url}/api/offer", data=b"{not json") as r:
                assert r.status == 400
            async with http.post(f"{url}/api/offer", json={"sdp": "v=0 nonsense", "type": "offer"}) as r:
                assert r.status == 400
            async with http.post(f"{url}/api/offer", data=b"x" * 300_000) as r:
                assert r.status == 413
            async with http.get(url) as r:
                assert r.status == 200 and "html" in r.headers["content-type"]
        peer = WebRTCPeer()
        await peer.connect(url)
        said = time.monotonic() + peer.say(SPEECH)
        await peer.wait_for_loud(timeout=5, after=said)
        await peer.close()


async def test_each_participant_gets_its_own_worker():
    async with running(load_agent_text(AGENT)) as (url, server):
        peers = [WebRTCPeer(), WebRTCPeer()]
        await asyncio.gather(*(p.connect(url) for p in peers))
        await asyncio.gather(*(p.wait_for_message(cm.BOT_READY, timeout=10) for p in peers))
        said = time.monotonic() + peers[0].say(SPEECH)
        await peers[0].wait_for_loud(timeout=5, after=said)
        await asyncio.sleep(0.3)
        assert peers[1].first_loud_after(said) is None  # the other participant's agent did not hear it
        await peers[0].close()
        await wait_until(lambda: sorted(s.state for s in server.sessions.values()) == [SessionState.ACTIVE, SessionState.DISCONNECTED], 10, "one end")
        transport = weakref.ref(next(s.built.transport for s in server.sessions.values() if s.built))
        await peers[1].close()
        await wait_until(lambda: all(s.state == SessionState.DISCONNECTED for s in server.sessions.values()), 10, "both ended")
        gc.collect()
        assert transport() is None  # a finished session's graph is freed


async def test_framegraph_run_serves_the_page_and_agent_until_ctrl_c(tmp_path):
    # A copy: its default store and server id are this test's own, not shared with a test run beside it (pytest -n).
    config = tmp_path / "transport_check.yaml"
    config.write_text((ROOT / "configs" / "transport_check.yaml").read_text())
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pipelines.cli", "run", str(config), "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, cwd=ROOT,
    )
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        url = re.search(r"(http://\S+?)/? ", line).group(1)
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as r:
                assert r.status == 200 and "framegraph" in await r.text()
        peer = WebRTCPeer()
        await peer.connect(url)
        said = time.monotonic() + peer.say(SPEECH)
        await peer.wait_for_loud(timeout=5, after=said)
        await peer.close()
    finally:
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 30) in (0, 130)  # 130: the CLI's Ctrl-C status


async def test_participants_over_the_limit_are_refused_until_one_leaves():
    async with running(load_agent_text(AGENT.replace("port: 0,", "port: 0, max_participants: 1,"))) as (url, server):
        first = WebRTCPeer()
        await first.connect(url)
        second = WebRTCPeer()
        try:
            await second.connect(url)
            raise AssertionError("a second participant was let in")
        except aiohttp.ClientResponseError as e:
            assert e.status == 503
        await second.pc.close()
        await first.close()
        await wait_until(lambda: server.full() is None, 10, "the first participant's session end")
        third = WebRTCPeer()
        await third.connect(url)
        await third.wait_for_message(cm.BOT_READY, timeout=10)
        await third.close()


def self_signed(folder) -> tuple[str, str]:
    """A throwaway certificate and key for 127.0.0.1, as PEM files in ``folder``."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256())
    )
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return "cert.pem", "key.pem"


async def test_serves_https_with_a_certificate(write_config, tmp_path):
    cert, key = self_signed(tmp_path)
    path = write_config(AGENT.replace("port: 0,", f"port: 0, ssl_certfile: {cert}, ssl_keyfile: {key},"))
    async with running(load_agent(path)) as (url, _):
        assert url.startswith("https://")
        async with aiohttp.ClientSession() as http:
            async with http.get(url, ssl=False) as r:
                assert r.status == 200


def test_certificate_without_key_is_a_config_error():
    with pytest.raises(ConfigErrors, match="ssl_certfile and ssl_keyfile go together"):
        load_agent_text(AGENT.replace("port: 0,", "port: 0, ssl_certfile: cert.pem,"))
