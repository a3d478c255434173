"""framegraph's framework: YAML loader, spec, registry, graph builder, runner, CLI and test kit."""
