"""Closed-domain grammars for pocketsphinx: phrase lists and JSGF, checked at build time; transcripts written like text.

A grammar narrows recognition to what an agent expects to hear (commands, the
answers of a quiz), which takes pocketsphinx from 70% word errors on synthetic
speech to a few percent. Mistakes surface when the agent is built, as one line
that names the YAML key: a JSGF syntax error with its line, or the words the
pronunciation dictionary does not know (pocketsphinx would silently drop them).
"""

import os
import re
import tempfile
from functools import cache
from importlib.util import find_spec
from pathlib import Path

from pipelines.errors import missing_extra

GRAMMAR_NAME = "phrases"
_WORDS = re.compile(r"[a-z0-9']+")
#: Words that open a question: a transcript that starts with one ends with "?".
_QUESTION_WORDS = frozenset(
    "what where when why who whom whose which how is are am was were do does did can could will would shall should"
    .split())
_COMMENTS = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
_NON_WORDS = re.compile(r"<[^>]*>|\{[^}]*\}|/[^/]*/|[|()\[\]*+;=]")


class GrammarError(ValueError):
    """A grammar that does not parse or uses unknown words; the message names the key."""


def phrases_to_jsgf(phrases: list[str]) -> str:
    """A JSGF grammar accepting exactly one of ``phrases`` (case and punctuation ignored)."""
    alternatives = []
    for phrase in phrases:
        words = _WORDS.findall(phrase.lower())
        if words:
            alternatives.append("( " + " ".join(words) + " )")
    body = " | ".join(alternatives)
    return f"#JSGF V1.0;\ngrammar {GRAMMAR_NAME};\npublic <phrase> = {body};\n"


def grammar_words(jsgf: str) -> set[str]:
    """The words (terminals) a JSGF grammar uses, lower-cased as the dictionary has them."""
    words: set[str] = set()
    for statement in _COMMENTS.sub(" ", jsgf).split(";"):
        if "=" not in statement:
            continue  # header, grammar name, import
        rule_body = statement.split("=", 1)[1]
        words.update(w.lower() for w in _NON_WORDS.sub(" ", rule_body).split())
    return words


@cache
def _unknown_words(words: frozenset[str], dictionary_path: str) -> frozenset[str]:
    """The subset of ``words`` the pronunciation dictionary lacks.

    One scan of the 3 MB dictionary (about 0.2 s), keeping nothing of it;
    remembered per word set, so agents sharing a config pay it once.
    """
    unknown = set(words)
    with open(dictionary_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            unknown.discard(line.split(" ", 1)[0].split("(", 1)[0])
            if not unknown:
                break
    return frozenset(unknown)


def dictionary_path() -> str:
    """The pronunciation dictionary inside the pocketsphinx wheel, found without importing pocketsphinx."""
    spec = find_spec("pocketsphinx")
    if spec is None or not spec.submodule_search_locations:
        missing = missing_extra("", "speech", ModuleNotFoundError("No module named 'pocketsphinx'"))
        raise GrammarError(missing.errors[0].message)
    return os.path.join(spec.submodule_search_locations[0], "model", "en-us", "cmudict-en-us.dict")


def unknown_words(words: set[str]) -> list[str]:
    """The ``words`` the pronunciation dictionary lacks, sorted."""
    return sorted(_unknown_words(frozenset(words), dictionary_path()))


def _parse_error(jsgf: str) -> str | None:
    """pocketsphinx's own parser verdict on ``jsgf``: None, or its message.

    The parser reports the reason only on the C stderr, so it is captured by
    pointing file descriptor 2 at a temporary file for the (sub-millisecond)
    parse.
    """
    from pocketsphinx import Jsgf

    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryFile() as captured:
        path = os.path.join(tmp, "grammar.gram")
        Path(path).write_text(jsgf, encoding="utf-8")
        saved_stderr = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            Jsgf(path)
            return None
        except ValueError:
            pass
        finally:
            os.dup2(saved_stderr, 2)
            os.close(saved_stderr)
        captured.seek(0)
        log = captured.read().decode(errors="replace")
    details = re.findall(r'"jsgf_parser\.y", line \d+: (.*)', log)
    return details[0].strip() if details else "not valid JSGF"


def check_grammar(jsgf: str, key: str) -> None:
    """Raise GrammarError naming ``key`` unless ``jsgf`` parses and every word is known."""
    if "public" not in jsgf:
        raise GrammarError(f"{key}: the JSGF grammar has no public rule")
    error = _parse_error(jsgf)
    if error:
        raise GrammarError(f"{key}: JSGF does not parse: {error}")
    unknown = unknown_words(grammar_words(jsgf))
    if unknown:
        raise GrammarError(f"{key}: words not in the pronunciation dictionary: {', '.join(unknown)}")


class PhraseSpelling:
    """Writes pocketsphinx's hypotheses (lower case, no punctuation) the way a person writes them.

    An utterance the grammar accepted is one of the phrases: it is written as
    the phrase list spells it ("what is the capital of Germany"). Anything
    else (the open language model, speech rejected as out of domain) gets
    sentence case, "I" for the pronoun, and a final mark: "?" after a
    question word, else ".". The raw hypothesis stays with the caller.
    """

    def __init__(self, phrases: list[str] | None = None):
        self._written: dict[tuple[str, ...], str] = {}
        for phrase in phrases or ():
            self._written.setdefault(tuple(_WORDS.findall(phrase.lower())), " ".join(phrase.split()))

    def write(self, hypothesis: str, *, in_grammar: bool) -> str:
        """``hypothesis`` as text; ``in_grammar``: the grammar accepted it (not rejected as out of domain)."""
        if in_grammar and (phrase := self._written.get(tuple(_WORDS.findall(hypothesis.lower())))):
            return phrase
        return sentence_case(hypothesis)


def sentence_case(hypothesis: str) -> str:
    """"what time is it" -> "What time is it?", "i think so" -> "I think so."."""
    words = ["I" + w[1:] if w == "i" or w.startswith("i'") else w for w in hypothesis.split()]
    if not words:
        return hypothesis
    mark = "?" if words[0] in _QUESTION_WORDS else "."
    words[0] = words[0][0].upper() + words[0][1:]
    return " ".join(words) + mark
