"""Configuration errors as data: each names its file, line and column.

Loading and validating a config collects every problem before anything runs,
so an author fixes a whole file in one pass instead of one error per run.
"""

import re
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path

#: Characters that must not reach a terminal raw: C0 and C1 controls, DEL, and
#: the bidirectional overrides that make text read differently than it is.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def escape(text: str) -> str:
    """``text`` with control characters escaped (``\\x1b``), so an error is one harmless line."""
    return _UNPRINTABLE.sub(lambda m: ascii(m.group())[1:-1], text)


@dataclass(frozen=True)
class Mark:
    """A position in a config file (1-based line and column).

    ``env`` holds the ``(variable, value)`` pairs substituted from the
    environment (``${VAR}``) into the scalar at this position, or anywhere
    inside the block at this position; errors marked here never print those
    values (they are often keys) and name the variable instead.
    """

    file: Path
    line: int
    column: int
    env: tuple[tuple[str, str], ...] = field(default=(), repr=False, compare=False)

    def __str__(self) -> str:
        return escape(f"{self.file}:{self.line}:{self.column}")

    def redact(self, text: str) -> str:
        """``text`` with every value that came from the environment replaced by ``${VAR}``.

        A value is also found lower- or upper-cased and with its control
        characters escaped, as validators often quote what they were given.
        """
        for name, value in sorted(self.env, key=lambda pair: -len(pair[1])):
            forms = sorted({value, escape(value)} - {""}, key=len, reverse=True)
            if forms:
                pattern = re.compile("|".join(map(re.escape, forms)), re.IGNORECASE)
                text = pattern.sub("${" + name.replace("\\", "\\\\") + "}", text)
        return text


@dataclass(frozen=True)
class ConfigError:
    """One problem in a config, with where it is and an optional hint."""

    mark: Mark | None
    key: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        message, hint = self.message, self.hint
        if self.mark and self.mark.env:
            message, hint = self.mark.redact(message), self.mark.redact(hint)
            if (message, hint) != (self.message, self.hint):
                names = ", ".join(dict.fromkeys(name for name, _ in self.mark.env))
                hint = "; ".join(filter(None, [hint, f"a value from the environment ({names}) is not shown"]))
        where = f"{self.mark}: " if self.mark else ""
        key = f"{escape(self.key)}: " if self.key else ""
        hint = f" ({hint})" if hint else ""
        return f"{where}{key}{escape(message)}{escape(hint)}"


class ConfigErrors(Exception):
    """Raised with every problem found in one or more configs."""

    def __init__(self, errors: list[ConfigError]):
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


class CannotStart(RuntimeError):
    """An agent cannot start here (no room to join, no network, no device); the message says what to fix.

    ``framegraph`` prints it as one line and exits 1, as it does a config problem.
    """


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
