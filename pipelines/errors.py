"""Configuration errors as data: each names its file, line and column.

Loading and validating a config collects every problem before anything runs,
so an author fixes a whole file in one pass instead of one error per run.
"""

from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path


@dataclass(frozen=True)
class Mark:
    """A position in a config file (1-based line and column)."""

    file: Path
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class ConfigError:
    """One problem in a config, with where it is and an optional hint."""

    mark: Mark | None
    key: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        where = f"{self.mark}: " if self.mark else ""
        key = f"{self.key}: " if self.key else ""
        hint = f" ({self.hint})" if self.hint else ""
        return f"{where}{key}{self.message}{hint}"


class ConfigErrors(Exception):
    """Raised with every problem found in one or more configs."""

    def __init__(self, errors: list[ConfigError]):
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


def missing_extra(key: str, extra: str, cause: ImportError, note: str = "") -> ConfigErrors:
    """The one-line error for a type whose optional dependencies are not installed.

    Raised by factories at build time, so ``framegraph run`` prints it like any
    other config problem instead of a traceback.
    """
    note = f" ({note})" if note else ""
    message = f"needs the '{extra}' extra{note}: pip install 'framegraph[{extra}]' ({cause})"
    return ConfigErrors([ConfigError(None, key, message)])


def did_you_mean(word: str, choices) -> str:
    """Returns a "did you mean ...?" hint for a misspelt name, or ""."""
    close = get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else ""
