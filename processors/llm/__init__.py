"""LLM services and personas."""
