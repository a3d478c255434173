"""pipecat's own eval harness (``pipecat eval run``, through ``framegraph eval``) against a framegraph agent.

The project's scenarios (tests/evals/, pipecat's scenario format) run
offline through the real harness in a subprocess against configs/greeter.yaml
served on a real WebSocket: the greeting, a question answered by the scripted
LLM (judged by keyword), a barge-in mid-story, in text and audio modes (the
user's voice espeak-ng, the bot's audio transcribed by pocketsphinx). A
negative control, the same agent answering the question wrongly, must fail.
"""

import asyncio
import sys

from conftest import ROOT

from pipelines.eval_command import run_eval
from pipelines.validate import load_agent, load_agent_text

GREETER = ROOT / "configs" / "greeter.yaml"
EVALS = ROOT / "tests" / "evals"


async def test_text_scenario_passes_through_pipecats_harness(tmp_path):
    assert await run_eval(load_agent(GREETER), [str(EVALS / "text.yaml")], timeout_secs=20, logs_dir=str(tmp_path)) == 0


async def test_audio_scenario_with_barge_in_passes_through_pipecats_harness(tmp_path):
    rc = await run_eval(load_agent(GREETER), [str(EVALS / "audio.yaml")], timeout_secs=25, logs_dir=str(tmp_path))
    log = (tmp_path / "greeter_audio__greeter_audio.eval.log").read_text()
    assert rc == 0, log
    assert "event: bot_interrupted" in log  # the barge-in turn really interrupted the story


async def test_negative_control_an_agent_answering_wrongly_fails(tmp_path):
    wrong = GREETER.read_text().replace("It is sunny and warm today.", "It is cold and raining today.")
    assert wrong != GREETER.read_text()
    agent = load_agent_text(wrong, GREETER)
    rc = await run_eval(agent, [str(EVALS / "text.yaml")], timeout_secs=3, logs_dir=str(tmp_path))
    log = (tmp_path / "greeter_text__greeter_text.eval.log").read_text()
    assert rc != 0 and "sunny and warm" in log and "cold and raining" in log


async def test_pipecat_eval_suite_spawns_framegraph_agents_from_a_manifest(tmp_path):
    """``pipecat eval suite tests/evals/suite.yaml``: pipecat's runner spawns ``framegraph serve`` per run."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pipecat.evals", "suite", str(EVALS / "suite.yaml"), "--scenario", "greeter_text",
        "--runs-dir", str(tmp_path), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=ROOT,
    )
    output = (await asyncio.wait_for(process.communicate(), 120))[0].decode()
    assert process.returncode == 0, output
    assert "1/1 passed" in output


CAPITAL = """version: 1
name: capital
transport: {type: websocket, audio_in_sample_rate: 16000, audio_out_sample_rate: 24000}
processors:
  stt: {type: pocketsphinx, phrases: [hello, what is the capital of Germany, goodbye]}
  llm:
    type: scripted
    rules: [{match: "capital of Germany", reply: "The capital of Germany is Berlin."}]
    fallback: "Sorry, say that again?"
  tts: {type: espeak}
pipeline: [input, stt, user_context, llm, tts, output, assistant_context]
"""


async def test_pipecats_capital_question_recording_is_transcribed_as_written(tmp_path):
    """pipecat's recorded-turn example: the transcript must contain "capital of Germany", capital G included."""
    agent = load_agent_text(CAPITAL, EVALS / "capital.yaml")
    rc = await run_eval(agent, [str(EVALS / "capital.yaml")], timeout_secs=25, logs_dir=str(tmp_path))
    log = (tmp_path / "capital_question_recording__capital_question_recording.eval.log").read_text()
    assert rc == 0, log
