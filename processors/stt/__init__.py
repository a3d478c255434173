"""Speech-to-text processors (``pocketsphinx``), decoded outside the agents' process."""
