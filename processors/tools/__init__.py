"""Tools (function calling) declared in YAML: schemas for the LLM, handlers that answer them."""
