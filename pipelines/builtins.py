"""The modules whose ``TYPES`` lists make up framegraph's built-in types."""

BUILTIN_MODULES = (
    "processors.basic",
    "processors.context",
    "processors.tone",
    "processors.llm.types",
    "processors.local.types",
    "processors.services.types",
    "processors.stt.types",
    "processors.tts.types",
    "processors.avatar.types",
    "transports.file",
    "transports.synthetic",
    "transports.webrtc",
    "transports.websocket",
    "transports.daily",
    "transports.local",
)
