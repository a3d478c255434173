"""The framegraph command, run as a user runs it."""

import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOUR = ROOT / "configs" / "graph_tour.yaml"


def framegraph(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


def test_validate_ok_and_broken_exit_codes():
    ok = framegraph("validate", str(TOUR))
    assert ok.returncode == 0 and "ok (graph_tour" in ok.stdout
    bad = framegraph("validate", str(TOUR), "tests/broken/unknown_type.yaml", "tests/broken/unused_processor.yaml")
    assert bad.returncode == 1
    errors = bad.stderr.strip().splitlines()
    assert errors == [
        "tests/broken/unknown_type.yaml:6:13: processors.a.type: unknown processor type 'passthru' (did you mean 'passthrough'?)",
        "tests/broken/unused_processor.yaml:7:3: processors.spare: processor 'spare' is declared but never used in the pipeline",
    ]
    assert "Traceback" not in bad.stderr


def test_graph_prints_mermaid_with_joins():
    result = framegraph("graph", str(TOUR))
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "flowchart LR"
    ids = {line.split("[")[0].strip(): line.split('"')[1] for line in lines if '["' in line}  # generated ids: n0, n1...
    names = {label.split(" ")[0]: node for node, label in ids.items()}
    assert f"    {names['input']} --> {names['normalize']}" in lines
    assert any(line.startswith(f"    {names['log']} --> ") and line.split()[-1] not in ids for line in lines)  # to a join
    assert sum(1 for line in lines if "((join))" in line) == 2


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".svg", b"<?xml")])
def test_graph_draws_pictures(tmp_path, suffix, magic):
    out = tmp_path / f"g{suffix}"
    result = framegraph("graph", str(TOUR), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_bytes().startswith(magic)


def test_list_shows_types_and_params():
    result = framegraph("list", "--kind", "processor")
    assert result.returncode == 0
    assert "passthrough" in result.stdout and "delay_ms: float (default 0.0)" in result.stdout


def test_list_by_an_old_type_name_shows_the_type_it_names_now():
    result = framegraph("list", "espeak")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("processor espeak_tts") and "voice: str" in result.stdout


def test_every_command_has_help():
    for command in ("validate", "graph", "run", "list"):
        result = framegraph(command, "--help")
        assert result.returncode == 0 and "usage: framegraph" in result.stdout


def test_run_refuses_a_broken_config_without_starting():
    result = framegraph("run", "tests/broken/no_output_end.yaml")
    assert result.returncode == 1
    assert "must end at 'output'" in result.stderr and "StartFrame" not in result.stderr


def test_list_into_a_closed_pipe_ends_without_a_traceback():
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "list"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # as `| head` does once it has its lines
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and b"Traceback" not in err and b"BrokenPipe" not in err


@pytest.mark.parametrize(("send_ready", "path"), [(False, "/ws"), (True, "/ws"), (True, "/sessions/s1/ws?token=t")])
def test_talk_says_in_one_line_that_the_agent_went_away(tmp_path, send_ready, path):
    """A real WebSocket server that hangs up, before or after its bot-ready; a session's URL is tried again first."""
    import asyncio
    import json
    import threading

    import websockets
    from pipecat.frames.protobufs import frames_pb2

    from pipelines.audio import write_wav

    write_wav(tmp_path / "q.wav", bytes(2 * 16000 * 3), 16000)
    started, port = threading.Event(), []

    async def hang_up(ws):
        if send_ready:
            frame = frames_pb2.Frame()
            frame.message.data = json.dumps({"label": "rtvi-ai", "type": "bot-ready", "data": {}})
            await ws.send(frame.SerializeToString())
            await asyncio.sleep(0.3)
        await ws.close(1011, "server going away")

    async def serve(stop: asyncio.Event):
        async with websockets.serve(hang_up, "127.0.0.1", 0) as server:
            port.append(server.sockets[0].getsockname()[1])
            started.set()
            await stop.wait()

    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(target=lambda: loop.run_until_complete(serve(stop)), daemon=True)
    thread.start()
    try:
        assert started.wait(30)
        result = framegraph("talk", f"ws://127.0.0.1:{port[0]}{path}", "--input", str(tmp_path / "q.wav"),
                            "--timeout", "20", "--reconnect-attempts", "2")
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    if path == "/ws":  # a new session per connection: nothing to resume
        assert "the agent closed the connection" in line and "1011" in line
    else:  # it came back twice (1 s, then 2 s later), was dropped again each time, and gave up
        assert "gave up resuming the session after 2 tries" in line


def test_run_of_a_servable_agent_starts_the_agent_server(tmp_path):
    """``framegraph run`` of a webrtc agent is served as ``framegraph serve`` serves it (both await
    ``pipelines.server.launch.serve``): its start line, the page, the dashboard and the sessions API."""
    out = tmp_path / "run.out"
    # A copy: its default store (.framegraph/sessions-0.db next to the file) and server id are this test's own,
    # not shared with another test serving the same file at the same time (pytest -n).
    config = tmp_path / "transport_check.yaml"
    config.write_text((ROOT / "configs" / "transport_check.yaml").read_text())
    with out.open("w") as stdout:
        process = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "run", str(config),
                                    "--set", "transport.port=0"], cwd=ROOT,
                                   stdout=stdout, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while not (url := re.search(r"serving .* on (http://\S+)/ ", out.read_text())):
                assert process.poll() is None and time.monotonic() < deadline, out.read_text()[-3000:]
                time.sleep(0.2)
            assert "(page: /, API: /docs, dashboard: /dashboard/)" in out.read_text()  # serve's own line
            with urllib.request.urlopen(f"{url.group(1)}/sessions", timeout=10) as sessions:
                assert sessions.status == 200
            for page in ("/", "/dashboard/"):
                with urllib.request.urlopen(f"{url.group(1)}{page}", timeout=10) as html:
                    assert b"<html" in html.read().lower()
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(60)
