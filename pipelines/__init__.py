"""framegraph's framework: YAML loader, spec, registry, graph builder, runner, CLI and test kit."""

import os as _os

if _os.environ.get("FRAMEGRAPH_LOG_LEVEL"):  # a worker process of a framegraph command: its one log level
    from pipelines.logs import configure_from_environment as _configure

    _configure()
