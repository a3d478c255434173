"""``framegraph eval FILE SCENARIO...``: pipecat's eval harness against a framegraph agent, in one command.

The agent is served on a WebSocket (any agent: its sample rates are kept,
its transport replaced, as ``framegraph serve --transport websocket`` does)
on a free loopback port, and pipecat's own harness (``pipecat eval run``,
``python -m pipecat.evals``) runs the scenarios against it; the command exits
with the harness's status. The harness speaks JSON RTVI, which the WebSocket
transport negotiates (``transports.websocket.transport``). Scenarios may name
framegraph's offline speech (``processors.evals.speech``) as their user's
voice and their transcriber of the bot's audio.

The harness's logs (``<scenario>.eval.log``) go to ``.framegraph/eval-logs``
beside the agent's file unless ``--logs-dir`` says where, never into the
current folder. The harness names the judge LLM of each scenario (Ollama by
default) even when no expectation asks it anything; the command leaves that
name out of its ``judge ->`` lines unless a scenario uses a judge (an
``eval:`` criterion, or a simulation).
"""

import asyncio
import os
import re
import sys
from dataclasses import replace
from pathlib import Path

#: The repository root, so scenario files can name ``processors.evals.speech`` factories.
ROOT = Path(__file__).resolve().parent.parent


def harness_command(scenarios: list[str], bot_url: str, *, timeout_secs: int, verbose: bool,
                    logs_dir: str | None) -> list[str]:
    """The ``pipecat eval run`` command line for ``scenarios`` against ``bot_url``."""
    command = [sys.executable, "-m", "pipecat.evals", "run", *scenarios, "--bot-url", bot_url,
               "--timeout", str(timeout_secs), "--no-cache"]
    if verbose:
        command.append("--verbose")
    if logs_dir:
        command += ["--logs-dir", logs_dir]
    return command


async def run_eval(agent, scenarios: list[str], *, timeout_secs: int = 30, verbose: bool = False,
                   logs_dir: str | None = None) -> int:
    """Serves ``agent`` on a loopback WebSocket and runs pipecat's harness on ``scenarios``; returns its exit status."""
    from pipelines.server.app import running, served_on
    from pipelines.validate import Component

    # The harness seeds a scenario's context (eval-context) and sends text turns (send-text): enabled here,
    # whatever the YAML says (off by default for any other client).
    served = agent if agent.transport.type.name == "websocket" else served_on(agent, "websocket")
    params = served.transport.params.model_copy(update={"client_context": ["send-text", "eval-context"]})
    served = replace(served, transport=Component(served.transport.id, served.transport.type, params))
    async with running(served, "127.0.0.1", 0) as (url, _server):
        bot_url = url.replace("http://", "ws://").replace("https://", "wss://") + "/ws"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        process = await asyncio.create_subprocess_exec(
            *harness_command(scenarios, bot_url, timeout_secs=timeout_secs, verbose=verbose, logs_dir=logs_dir),
            env=env, stdout=asyncio.subprocess.PIPE,
        )
        judged = uses_a_judge(scenarios)
        async for line in process.stdout:
            text = line.decode(errors="replace")
            print(text if judged else _UNUSED_JUDGE.sub(r"\1", text), end="", flush=True)
        return await process.wait()


#: A harness line naming the judge LLM: ``judge -> modality: text | eval: ollama/gemma4:12b``.
_UNUSED_JUDGE = re.compile(r"^(\s*judge\s*->.*?)\s*\|\s*eval: \S+")


def uses_a_judge(scenarios: list[str]) -> bool:
    """Whether any scenario in these files or folders asks the judge LLM anything (``eval:``, or a simulation)."""
    from pipecat.evals.scenario import EvalScenarioFile
    from pipecat.evals.script import EvalScriptScenario

    files = [f for s in map(Path, scenarios) for f in (sorted(s.rglob("*.yaml")) if s.is_dir() else [s])]
    for file in files:
        try:
            loaded = EvalScenarioFile.load(file)
        except (ValueError, OSError):
            return True  # the harness reports the file; keep its lines as they are
        for scenario in loaded.scenarios:
            if not isinstance(scenario, EvalScriptScenario):
                return True  # a simulation: the judge decides its goal
            if any(e.eval for turn in scenario.turns for e in turn.expect):
                return True
    return False


def cmd_eval(args) -> int:
    from pipelines.cli import load_one

    agent = load_one(args.file, args.overrides)
    if agent is None:
        return 1
    missing = [s for s in args.scenarios if not Path(s).exists()]
    if missing:
        print(f"no such scenario file or folder: {', '.join(missing)}", file=sys.stderr)
        return 1
    logs_dir = args.logs_dir or str(agent.config_dir / ".framegraph" / "eval-logs")
    return asyncio.run(run_eval(agent, args.scenarios, timeout_secs=args.timeout, verbose=args.verbose,
                                logs_dir=logs_dir))


def add_parser(subparsers) -> None:
    """Adds ``framegraph eval``."""
    from pipelines.cli import add_set_option

    p = subparsers.add_parser(
        "eval",
        help="run pipecat's eval scenarios against an agent (starts it, runs `pipecat eval run`)",
        description="Serve an agent on a loopback WebSocket and run pipecat's eval harness on scenario files.",
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument("scenarios", nargs="+", metavar="SCENARIO", help="pipecat scenario files or folders of them")
    p.add_argument("-t", "--timeout", type=int, default=30, help="seconds per expectation without its own within_ms (default 30)")
    p.add_argument("-v", "--verbose", action="store_true", help="a line per turn and expectation")
    p.add_argument("--logs-dir", help="where the harness writes <scenario>.eval.log (default: .framegraph/eval-logs beside FILE)")
    add_set_option(p)
    p.set_defaults(func=cmd_eval)
