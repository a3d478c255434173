"""A newcomer's first hour: the stumbles issue 22 found, each pinned by a test.

Every test runs the real command (``pipelines.cli.main``, or ``framegraph`` in
a subprocess where the process matters) on real files.
"""

import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from pipelines.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_validate_reports_an_unknown_top_level_key_and_every_other_problem(tmp_path, capsys):
    # Caught: an unknown top-level key stopped validation, hiding the file's other errors.
    config = tmp_path / "many.yaml"
    config.write_text("""version: 1
name: many
colour: blue
transport: {type: synthtic}
processors:
  a: {type: passthrough, bogus: 1}
  b: {nope: 1}
pipeline: [input, a, c, output]
""")
    assert main(["validate", str(config)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert f"{config}:3:1: colour: unknown key" in lines
    assert f"{config}:4:19: transport.type: unknown transport type 'synthtic' (did you mean 'synthetic'?)" in lines
    assert f"{config}:6:26: processors.a.bogus: unknown key" in lines
    assert f"{config}:7:6: processors.b.type: required key is missing" in lines
    assert f"{config}:8:22: pipeline.2: 'c' is not a declared processor" in lines
    # A malformed block still counts as declared: no false "not declared" for it.
    assert not [line for line in lines if "'b' is not a declared" in line]


def test_a_missing_local_model_folder_fails_validation_before_anything_serves(tmp_path, capsys):
    # Caught: the agent validated "ok" and served; each client got a silent connection.
    config = tmp_path / "local.yaml"
    config.write_text("""version: 1
name: local
transport: {type: webrtc}
processors:
  stt: {type: local_whisper_stt, model_path: models/whisper-tiny.en}
pipeline: [input, stt, output]
""")
    assert main(["validate", str(config)]) == 1
    expected = (f"{config}:5:46: processors.stt.model_path: {tmp_path}/models/whisper-tiny.en "
                "is not a model directory (no config.json)")
    assert capsys.readouterr().err.splitlines() == [expected]
    assert main(["serve", str(config), "--port", "0", "--workers", "1"]) == 1
    assert capsys.readouterr().err.splitlines() == [expected]


def test_validate_and_check_agree_about_an_unset_openai_key(monkeypatch, capsys):
    # Caught: validate said ok without OPENAI_API_KEY; check then failed with "Missing credentials".
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    config = ROOT / "configs" / "cloud_assistant.yaml"
    assert main(["validate", str(config)]) == 1
    validate_lines = capsys.readouterr().err.splitlines()
    assert [line.split(": ", 1)[1] for line in validate_lines] == [  # each with its file:line:column
        f"processors.{pid}: set OPENAI_API_KEY (or give api_key: ${{YOUR_VAR}})" for pid in ("stt", "llm", "tts")]
    assert main(["check", str(config)]) == 1
    assert capsys.readouterr().err.splitlines() == validate_lines


@contextmanager
def served(tmp_path: Path, *args: str):
    """``framegraph serve ARGS`` in a process of its own; yields (its URL, its stdout file, its stderr file).

    Waits (bounded) for its "serving" line; stops it with Ctrl-C (SIGINT) afterwards and waits for it to end.
    """
    out, err = tmp_path / "serve.out", tmp_path / "serve.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "pipelines.cli", *args, "--port", "0", "--store",
                                    str(tmp_path / "sessions.db")], cwd=ROOT, stdout=stdout, stderr=stderr)
        try:
            deadline = time.monotonic() + 180
            while not (url := re.search(r"serving .* on (http://\S+)/ ", out.read_text())):
                assert process.poll() is None and time.monotonic() < deadline, err.read_text()[-3000:]
                time.sleep(0.2)
            yield url.group(1), out, err
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def test_worker_processes_log_at_the_commands_one_level_and_never_the_conversations_words(tmp_path):
    # Caught (issue 21.8): with --workers 2 the workers logged at DEBUG, the bot's words included
    # ("Generating TTS [...]"); and start-up was 20 DEBUG lines per worker, then nothing until "serving".
    with served(tmp_path, "serve", "configs/assistant.yaml", "--transport", "websocket", "--workers", "2") as (url, out, err):
        talk = subprocess.run([sys.executable, "-m", "pipelines.cli", "talk", url.replace("http", "ws") + "/ws",
                               "--input", "configs/audio/question.wav", "--timeout", "90"],
                              cwd=ROOT, capture_output=True, text=True, timeout=240)
        assert talk.returncode == 0, talk.stderr
        said = [line.removeprefix("bot: ").strip() for line in talk.stdout.splitlines() if line.startswith("bot: ")]
        assert [text for text in said if text], talk.stdout  # the bot answered in words
    log = err.read_text()
    assert "| DEBUG" not in log and "Generating TTS" not in log, log[-3000:]
    assert not [text for text in said if len(text) > 3 and text in log], log[-3000:]
    for worker in ("framegraph-worker-0", "framegraph-worker-1"):  # one progress line per warming step
        assert re.search(rf"{worker}: warmed 'assistant' \(its shared models loaded\) in \d+\.\d s", log), log[-3000:]
    assert "starting 2 worker processes" in log
    assert re.search(r"ready in \d+\.\d s", out.read_text())


def test_verbose_reaches_the_worker_processes(tmp_path):
    with served(tmp_path, "serve", "configs/assistant.yaml", "--transport", "websocket", "--workers", "2", "-v") as (_, _, err):
        pass
    # Each worker says at DEBUG what it prewarmed; only a worker logs these lines.
    assert err.read_text().count("prewarmed 'assistant': context, stt") >= 2, err.read_text()[-3000:]


DAILY_AGENT = """version: 1
name: in_a_room
transport: {type: daily, join_timeout_secs: 3}
processors:
  bot: {type: tone_reply}
pipeline: [input, bot, output]
"""


def framegraph(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """``framegraph ARGS`` in a process of its own, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=180, env=env)


def test_daily_without_a_room_or_the_extra_is_one_line_and_exit_1(write_config):
    # Caught: a full traceback (DailyError), and pipecat's `uv add "pipecat-ai[daily]"` beside framegraph's own command.
    config = str(write_config(DAILY_AGENT))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAILY_")}
    no_room = framegraph("run", config, env=env)
    assert no_room.returncode == 1
    assert no_room.stderr.splitlines() == [
        "error: no Daily room to join: set the transport's room_url (or $DAILY_ROOM_URL, with token or $DAILY_TOKEN "
        "for a private room), or give an API key (api_key or $DAILY_API_KEY) to create a room"]
    no_api = framegraph("run", config, "--set", "transport.api_url=http://127.0.0.1:9/v1", env={**env, "DAILY_API_KEY": "k"})
    assert no_api.returncode == 1
    (line,) = no_api.stderr.splitlines()
    assert line.startswith("error: could not reach Daily's API at http://127.0.0.1:9/v1 to create a room")
    a_room = framegraph("run", config, env={**env, "DAILY_ROOM_URL": "https://127.0.0.1:9/room"})
    assert a_room.returncode == 1 and "Traceback" not in a_room.stderr
    if importlib.util.find_spec("daily") is None:
        assert a_room.stderr.splitlines() == [  # one install command, framegraph's
            "transport: needs the 'daily' extra: pip install 'framegraph[daily]' (Missing module: No module named 'daily')"]
    else:  # nothing answers there: the join fails or times out, in one line
        assert a_room.stderr.splitlines()[-1].startswith("error: could not join"), a_room.stderr


README_TEST = '''from pipecat.frames.frames import TextFrame
from pipelines.testing import AgentHarness

async def test_reaches_output():
    async with AgentHarness.from_file("configs/graph_tour.yaml") as h:   # synthetic transport
        out = h.probe("text_only")                 # what a processor pushes (upstream=True for the other way)
        await h.inject(TextFrame("hi"))            # at the input; at="left" to deliver to any processor
        await out.wait_for(TextFrame, timeout=5)   # bounded; a timeout names what was seen instead
'''


def test_the_readme_pytest_example_runs_in_a_folder_outside_the_repository(tmp_path):
    # Caught: outside the repository (no asyncio_mode=auto) it failed: "async def functions are not natively supported".
    import tomllib

    readme = (ROOT / "docs" / "testing.md").read_text()
    assert README_TEST.split("\n", 3)[3] in readme  # the example as docs/testing.md shows it
    project = tmp_path / "my_agents"
    (project / "configs").mkdir(parents=True)
    (project / "configs" / "graph_tour.yaml").write_text((ROOT / "configs" / "graph_tour.yaml").read_text())
    (project / "test_agent.py").write_text(README_TEST)
    # framegraph as installed: its distribution's entry points, from pyproject.toml, where pytest looks for them.
    entry_points = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["pytest11"]
    site = tmp_path / "site" / "framegraph_under_test-0.dist-info"
    site.mkdir(parents=True)
    (site / "METADATA").write_text("Metadata-Version: 2.1\nName: framegraph-under-test\nVersion: 0\n")
    (site / "entry_points.txt").write_text("[pytest11]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_DISABLE_PLUGIN_AUTOLOAD"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(site.parent)])

    def pytest_in_project(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=project,
                              env=env, capture_output=True, text=True, timeout=240)

    run = pytest_in_project()
    assert run.returncode == 0 and "1 passed" in run.stdout, run.stdout[-3000:]
    without = pytest_in_project("-p", "no:framegraph")  # the plugin is what makes it work
    assert without.returncode == 1 and "async def functions are not natively supported" in without.stdout
    chosen = pytest_in_project("--asyncio-mode", "strict")  # a project's own choice is kept
    assert chosen.returncode == 1 and "async def functions are not natively supported" in chosen.stdout


def test_graph_out_without_graphviz_says_to_install_it(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path)}  # no `dot` anywhere on it
    result = framegraph("graph", "configs/graph_tour.yaml", "--out", str(tmp_path / "g.png"), env=env)
    assert result.returncode == 1 and not (tmp_path / "g.png").exists()
    assert result.stderr.splitlines() == [
        "configs/graph_tour.yaml: Graphviz 'dot' is not installed (apt-get install graphviz); "
        "without --out it prints Mermaid text"]


def test_two_servers_started_from_one_folder_keep_their_sessions_apart(tmp_path):
    # Caught: both used .framegraph/sessions.db next to the config: one store and one dashboard, silently.
    from pipelines.server.app import default_store, served_on
    from pipelines.validate import load_agent

    agent = served_on(load_agent(ROOT / "configs" / "assistant.yaml"), "webrtc")
    assert default_store(agent, 7860) != default_store(agent, 7861)
    assert default_store(agent, 7861) == str(ROOT / "configs" / ".framegraph" / "sessions-7861.db")
    assert default_store(agent) == default_store(agent, agent.transport.params.port)


async def test_two_servers_on_two_ports_list_only_their_own_sessions(tmp_path):
    """The real thing: two `serve` processes from one folder, no --store, each sees only its session."""
    import httpx

    config = tmp_path / "agent.yaml"
    config.write_text((ROOT / "configs" / "graph_tour.yaml").read_text().replace("type: synthetic", "type: websocket"))
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    processes = [subprocess.Popen([sys.executable, "-m", "pipelines.cli", "serve", str(config), "--workers", "1",
                                   "--port", str(port)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  text=True) for port in ports]
    try:
        for process in processes:
            assert "serving" in process.stdout.readline()
        async with httpx.AsyncClient(timeout=30) as http:
            for port in ports:
                created = await http.post(f"http://127.0.0.1:{port}/sessions", json={})
                assert created.status_code in (200, 201), created.text
            for port in ports:
                listed = (await http.get(f"http://127.0.0.1:{port}/sessions")).json()
                assert len(listed["items"]) == 1, listed
    finally:
        for process in processes:
            process.send_signal(signal.SIGINT)
        for process in processes:
            process.wait(60)
    assert sorted(p.name for p in (tmp_path / ".framegraph").glob("sessions-*.db")) == sorted(
        f"sessions-{port}.db" for port in ports)


def test_eval_leaves_no_log_in_the_current_folder_and_names_no_judge_it_does_not_use(tmp_path):
    # Caught: greeter_text__greeter_text.eval.log in the current folder, and "eval: ollama/gemma4:12b" printed.
    result = framegraph("eval", str(ROOT / "configs" / "greeter.yaml"), str(ROOT / "tests" / "evals" / "text.yaml"),
                        cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert list(tmp_path.iterdir()) == []
    judge_lines = [line for line in result.stdout.splitlines() if line.strip().startswith("judge")]
    assert judge_lines and not [line for line in judge_lines if "eval:" in line], result.stdout
    assert (ROOT / "configs" / ".framegraph" / "eval-logs" / "greeter_text__greeter_text.eval.log").is_file()


def test_a_scenario_with_an_eval_criterion_keeps_its_judge_line(tmp_path):
    from pipelines.eval_command import uses_a_judge

    scenario = tmp_path / "judged.yaml"
    scenario.write_text((ROOT / "tests" / "evals" / "text.yaml").read_text().replace(
        'text_contains: "sunny and warm"', 'eval: "says the weather is nice"'))
    assert uses_a_judge([str(scenario)])
    assert not uses_a_judge([str(ROOT / "tests" / "evals" / "text.yaml")])


def test_a_command_run_in_process_under_capture(capsys):
    """The first half of the next test: ``main`` configures logging while pytest captures stderr."""
    assert main(["validate", str(ROOT / "configs" / "graph_tour.yaml")]) == 0
    assert "ok (graph_tour" in capsys.readouterr().out


def test_logging_after_a_captured_command_reaches_the_current_stderr(capsys):
    # Caught: "Logging error in Loguru Handler ... I/O operation on closed file": a command run in process
    # (main, as tests call it) added a loguru sink on the stderr of that moment, pytest's capture of the test
    # before, closed when that test ended; every later log line (teardown included) failed on it.
    from loguru import logger

    logger.warning("logged after a command ran under another test's capture")
    err = capsys.readouterr().err
    assert "logged after a command ran under another test's capture" in err and "Logging error" not in err


def test_a_listening_bench_runs_without_recorded_clips_and_says_what_it_heard(tmp_path):
    # Caught: on a fresh clone (no ../shared/audio/human) the benches stopped with "no clips in ...".
    env = {**os.environ, "FRAMEGRAPH_HUMAN_AUDIO": str(tmp_path)}  # an empty folder
    result = subprocess.run([sys.executable, "bench/stt_accuracy.py"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"clips: no recorded clips in {tmp_path} (FRAMEGRAPH_HUMAN_AUDIO names a folder")
    assert "sentences spoken by espeak-ng" in lines[0]
    assert re.search(r"WER \d+\.\d% \(\d+/\d+ words\)", lines[-1]), lines[-1]
    # With recorded clips (here: one made by `framegraph say`, with its words), it says it used those.
    clips = tmp_path / "clips"
    clips.mkdir()
    assert framegraph("say", "what time is it", "-o", str(clips / "a.wav")).returncode == 0
    (clips / "a.txt").write_text("what time is it\n")
    recorded = subprocess.run([sys.executable, "bench/stt_accuracy.py", "--audio", str(clips)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
    assert recorded.returncode == 0, recorded.stderr[-3000:]
    assert recorded.stdout.splitlines()[0] == f"clips: 1 recorded clips from {clips}"
