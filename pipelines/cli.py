"""The ``framegraph`` command.

Every subcommand follows one pattern: a module-level ``add_parser(subparsers)``
adds it (with ``set_defaults(func=...)``), and its function takes the parsed
arguments and returns the exit code. The commands defined here (validate,
graph, run, list) are added the same way as those other modules hold
(``COMMAND_MODULES``), which import nothing heavy until they run.

Exit codes: 0 done, 1 a config problem or a failed check, 2 a usage error
(argparse), 3 ``check`` found no failure but could not build a config here,
130 Ctrl-C.
"""

import argparse
import os
import sys
from collections.abc import Iterator
from importlib import import_module
from pathlib import Path

from pipelines import logs
from pipelines.registry import KINDS

#: Modules that add a subcommand through ``add_parser(subparsers)``.
COMMAND_MODULES: tuple[str, ...] = (
    "transports.clients.talk",
    "pipelines.serve_command",
    "pipelines.eval_command",
    "pipelines.deploy_command",
    "pipelines.interruptions.check",
    "processors.tts.say",
)


#: Commands that serve agents: they log at INFO (start-up progress, sessions); the others (eval: the harness speaks) at WARNING.
AGENT_COMMANDS = ("run", "serve")


def add_verbose_option(parser: argparse.ArgumentParser) -> None:
    """``-v`` after a command that serves (``framegraph serve FILE -v``), as before it (``framegraph -v serve``)."""
    parser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="debug logging, worker processes included (default: INFO: start-up progress, sessions)")


def add_set_option(parser: argparse.ArgumentParser) -> None:
    """Adds ``--set KEY.PATH=VALUE`` (``pipelines.overrides``) to a command that loads configs."""
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY.PATH=VALUE", dest="overrides",
        help="override a config value, validated like the file (repeatable), e.g. --set transport.input=q.wav",
    )


def load_agents(paths: list[str], overrides: list[str] = ()) -> Iterator[tuple[str, object]]:
    """Loads each config with ``overrides`` applied; prints every problem and note; yields (path, agent or None)."""
    from pipelines.errors import ConfigErrors
    from pipelines.overrides import load_agent_with

    for path in paths:
        try:
            agent = load_agent_with(path, overrides)
        except ConfigErrors as e:
            print_errors(e)
            yield path, None
        else:
            print_errors(ConfigErrors(agent.notes))  # deprecated spellings: valid, with the new one to write
            yield path, agent


def load_one(path: str, overrides: list[str] = ()):
    """The agent in ``path`` (overrides applied), or None after printing its problems."""
    ((_, agent),) = load_agents([path], overrides)
    return agent


def print_errors(errors) -> None:
    """Prints a ``ConfigErrors``, one problem a line, to stderr."""
    for error in errors.errors:
        print(error, file=sys.stderr)


def cmd_validate(args) -> int:
    failed = 0
    for path, agent in load_agents(args.files):
        if agent is None:
            failed += 1
        else:
            print(f"{path}: ok ({agent.spec.name}, {len(agent.processors)} processors)")
    return 1 if failed else 0


def cmd_graph(args) -> int:
    from pipelines import diagram

    agent = load_one(args.file, args.overrides)
    if agent is None:
        return 1
    if args.out:
        try:
            diagram.render(agent, Path(args.out))
        except RuntimeError as e:
            print(f"{args.file}: {e}", file=sys.stderr)
            return 1
        print(f"wrote {args.out}")
    else:
        print(diagram.dot(agent) if args.dot else diagram.mermaid(agent), end="")
    return 0


def cmd_run(args) -> int:
    from pipelines.run_command import run
    from pipelines.runner import RunOptions

    agent = load_one(args.file, args.overrides)
    if agent is None:
        return 1
    run(agent, RunOptions(host=args.host, port=args.port, realtime=args.realtime))
    return 0


def cmd_list(args) -> int:
    from pipelines.registry import default_registry

    registry = default_registry()
    asked = {name: [info for kind in KINDS if (info := registry.get(kind, name))] for name in args.types}
    unknown = [name for name, found in asked.items() if not found]
    if unknown:
        print(f"no such type: {', '.join(unknown)}", file=sys.stderr)
        return 1
    wanted = {info.name for found in asked.values() for info in found}  # an old name (alias) lists the type it names now
    for info in registry.all():
        if (args.kind and info.kind != args.kind) or (args.types and info.name not in wanted):
            continue
        print(f"{info.kind:9} {info.name:16} {info.summary}")
        if args.types and info.params.__doc__:
            print("\n".join(f"{'':28}{line}" for line in info.params.__doc__.strip().splitlines()))
        for name, field in info.params.model_fields.items():
            default = "required" if field.is_required() else f"default {field.get_default(call_default_factory=True)!r}"
            note = f"  {field.description}" if field.description else ""
            print(f"{'':28}{name}: {_type_name(field.annotation)} ({default}){note}")
    return 0


def _type_name(annotation) -> str:
    if getattr(annotation, "__args__", None):
        return str(annotation).replace("typing.", "")
    return getattr(annotation, "__name__", str(annotation))


def add_validate(sub) -> None:
    p = sub.add_parser("validate", help="check configs; every problem with file:line:column", description="Validate agent configs.")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=cmd_validate)


def add_graph(sub) -> None:
    p = sub.add_parser("graph", help="print the graph as Mermaid, or draw it", description="Show an agent's graph.")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--out", metavar="PIC", help="write a picture (.png or .svg; needs Graphviz)")
    p.add_argument("--dot", action="store_true", help="print Graphviz DOT instead of Mermaid")
    add_set_option(p)
    p.set_defaults(func=cmd_graph)


def add_run(sub) -> None:
    p = sub.add_parser("run", help="run an agent", description="Run an agent on its transport.")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--host", help="address a serving transport listens on")
    p.add_argument("--port", type=int, help="port a serving transport listens on")
    p.add_argument("--realtime", action="store_true", help="file transport: run at the audio's real speed")
    add_verbose_option(p)
    add_set_option(p)
    p.set_defaults(func=cmd_run)


def add_list(sub) -> None:
    p = sub.add_parser("list", help="registered types and their params", description="List registered types.")
    p.add_argument("types", nargs="*", metavar="TYPE", help="only these types, with their documentation")
    p.add_argument("--kind", choices=KINDS)
    p.set_defaults(func=cmd_list)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="framegraph", description="Declarative YAML voice and avatar agents on pipecat.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (add_validate, add_graph, add_run, add_list):
        add(sub)
    for module in COMMAND_MODULES:
        import_module(module).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure("DEBUG" if args.verbose else ("INFO" if args.command in AGENT_COMMANDS else "WARNING"))
    from pipelines.errors import CannotStart, ConfigErrors, escape

    try:
        code = args.func(args)
        sys.stdout.flush()
        return code
    except ConfigErrors as e:
        # Problems only found while building (a missing key file, a model path).
        print_errors(e)
        return 1
    except CannotStart as e:
        print(f"error: {escape(str(e))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``framegraph list | head``): stop quietly, as
        # Python's documentation advises, so the exit flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
