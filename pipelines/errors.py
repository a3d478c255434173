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

    def shows_env(self, text: str) -> bool:
        """Whether ``text`` holds a value that came from the environment (as it is, or as a validator quotes it).

        Only to decide: an error whose text holds one is printed as written
        (``pipelines.validate`` validates the config again with ``${VAR}`` in
        place of each value, so the value's place in the message is known),
        never by replacing what looks like the value in the text, which
        garbles a message when the value is short.
        """
        lowered = text.lower()
        return any(form and form.lower() in lowered for _, value in self.env for form in env_forms(value))

    @property
    def env_names(self) -> str:
        return ", ".join(dict.fromkeys(name for name, _ in self.env))


def env_forms(value: str) -> tuple[str, ...]:
    """How a validator may quote ``value`` in a message: as it is, control characters escaped, or as ``repr`` shows it."""
    return tuple(dict.fromkeys((value, escape(value), repr(value)[1:-1])))


@dataclass(frozen=True)
class ConfigError:
    """One problem in a config, with where it is and an optional hint."""

    mark: Mark | None
    key: str
    message: str
    hint: str = ""
    #: The message and hint name ``${VAR}`` where a value from the environment was (``pipelines.validate``).
    as_written: bool = False

    def __str__(self) -> str:
        message, hint = self.message, self.hint
        if self.mark and self.mark.env:
            names = self.mark.env_names
            if not self.as_written and self.mark.shows_env(message):  # nothing tells where the value is in it
                message = "this value is not valid"
            if not self.as_written and self.mark.shows_env(hint):
                hint = ""
            if (message, hint) != (self.message, self.hint) or "${" in message:
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
    """An agent cannot start here (no room to join, no network, no device, a service refused it); the message says what to fix.

    ``framegraph`` prints it as one line and exits 1, as it does a config problem.
    Transports and processors raise subclasses of it (``transports.daily.DailyError``).
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
