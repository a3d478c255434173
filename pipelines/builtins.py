"""The modules whose ``TYPES`` lists make up framegraph's built-in types."""

BUILTIN_MODULES = (
    "processors.basic",
    "processors.context",
    "processors.stt.types",
    "transports.synthetic",
)
