"""The file transport's transcript writer: one JSON line per user or bot turn."""

import json
from pathlib import Path


class Transcript:
    """Appends one JSON object per user or bot turn to a file (or nowhere)."""

    def __init__(self, path: Path | None):
        self._file = path.open("w", encoding="utf-8") if path else None

    def add(self, **record) -> None:
        """Writes a record at once, so a crash keeps what was said."""
        if self._file:
            self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file:
            self._file.close()
            self._file = None
