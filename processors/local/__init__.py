"""Local models named by path (extra ``torch``): Whisper speech-to-text and a chat LLM, through transformers."""
