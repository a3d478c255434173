"""Offline speech for pipecat's eval harness, as scenario ``factory:`` entries."""
