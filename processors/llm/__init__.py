"""LLM services (personas are the framework's: ``pipelines.persona``)."""
