"""``framegraph check FILE``: the interruption conformance scenario (``pipelines.interruptions.conformance``) as a command.

Imports of pipecat wait until the command runs, so listing commands stays light.
"""

import asyncio
import sys


def cmd_check(args) -> int:
    from pipelines.cli import _agents
    from pipelines.interruptions.conformance import format_report, run_check
    from pipelines.errors import ConfigErrors

    failed = 0
    for path, agent in _agents(args.files):
        if agent is None:
            failed += 1
            continue
        try:
            report = asyncio.run(run_check(agent))
        except ConfigErrors as e:
            # A config that needs what this machine lacks (an API key) is not checked, and says so.
            print("\n".join(f"{path}: NOT CHECKED, cannot build here: {error}" for error in e.errors), file=sys.stderr)
            continue
        print(format_report(path, report), file=sys.stdout if report.ok else sys.stderr, flush=True)
        failed += not report.ok
    return 1 if failed else 0


def add_parser(subparsers) -> None:
    """Adds ``framegraph check``."""
    p = subparsers.add_parser(
        "check", help="interruption conformance: every processor, exactly once, nothing stale",
        description="Run the interruption conformance scenario against agents on the synthetic transport.",
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=cmd_check)
