"""``framegraph check FILE``: the interruption conformance scenario (``pipelines.interruptions.conformance``) as a command.

Exit codes: 0 every config passed, 1 a config failed (or did not load), and
``NOT_CHECKED`` (3; 2 is argparse's usage error) when nothing failed but a
config could not be built here (an API key or an extra this machine lacks),
so a skipped check is never mistaken for a pass. Imports of pipecat wait until the command runs, so
listing commands stays light.
"""

import asyncio
import sys

#: Exit code when no config failed but at least one could not be checked here.
NOT_CHECKED = 3


def cmd_check(args) -> int:
    from pipelines.cli import load_agents
    from pipelines.errors import ConfigErrors
    from pipelines.interruptions.conformance import format_report, run_check

    failed = unchecked = 0
    for path, agent in load_agents(args.files, args.overrides):
        if agent is None:
            failed += 1
            continue
        try:
            report = asyncio.run(run_check(agent))
        except ConfigErrors as e:
            # A config that needs what this machine lacks (an API key) is not checked, and says so.
            print("\n".join(f"{path}: NOT CHECKED, cannot build here: {error}" for error in e.errors), file=sys.stderr)
            unchecked += 1
            continue
        print(format_report(path, report), file=sys.stdout if report.ok else sys.stderr, flush=True)
        failed += not report.ok
    return 1 if failed else NOT_CHECKED if unchecked else 0


def add_parser(subparsers) -> None:
    """Adds ``framegraph check``."""
    from pipelines.cli import add_set_option

    p = subparsers.add_parser(
        "check", help="interruption conformance: every processor, exactly once, nothing stale",
        description="Run the interruption conformance scenario against agents on the synthetic transport. "
                    f"Exit 0: all passed; 1: a config failed; {NOT_CHECKED}: none failed, but one could not be built here.",
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    add_set_option(p)
    p.set_defaults(func=cmd_check)
