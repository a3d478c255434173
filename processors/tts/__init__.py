"""Text-to-speech services."""
