"""Piper's text in pieces and its audio timed: what ``processors.tts.piper`` says when.

Pure functions on text, numpy audio and piper's phoneme alignments, so they
are tested without a voice: how a reply's first sentence is cut for an early
first audio (:func:`speech_pieces`), how much silence a cut keeps
(:func:`kept_span`), and where each phoneme (for the avatar) and each word
(for the context) starts, from the samples the model gives each phoneme id or
estimated from the audio.
"""

import re
import unicodedata
from dataclasses import dataclass

import numpy as np

#: A sentence ends after one of these and white space.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
#: Words a first piece may end before: a clause goes on after them.
_JOINING = frozenset(
    "and but or so because that which who when while if as than then to of in on at for with about from".split())
#: Words that lean on the word after them: a first piece does not end on one.
_LEADING = frozenset("the a an my your our their his her its this these those no to of".split())
#: Marks that time nothing by themselves: stress goes with the next phoneme, length with the last.
_STRESS, _LENGTH = frozenset("ˈˌ"), frozenset("ːˑ")
#: piper's utterance start and end symbols (their samples are the silence around the utterance).
_BOS, _EOS = "^", "$"
#: Silence kept where a sentence was cut: after a piece that ends mid-clause, after one that ends
#: on a comma (its pause), and before the piece that goes on.
KEEP_JOIN_S, KEEP_COMMA_S, KEEP_LEAD_S = 0.02, 0.15, 0.01


@dataclass(frozen=True)
class Piece:
    """Text for one synthesis call; ``joins_next``/``continues``: its sentence was cut after/before it."""

    text: str
    joins_next: bool = False
    continues: bool = False


def speech_pieces(text: str, first_piece_words: int = 0) -> list[Piece]:
    """``text`` as pieces to synthesize in order: its sentences, the first cut early.

    With ``first_piece_words``, a first sentence longer than that is cut after
    its first clause mark (``,;:``) within that many words, else before the
    last joining word ("and", "to"...) there, else after that many words
    (fewer if the last would be an article or the like, "a", "the", "my");
    a cut that would leave a single word is not made.
    """
    sentences = [s for s in _SENTENCE_END.split(text.strip()) if s]
    pieces = [Piece(s) for s in sentences]
    if pieces and first_piece_words:
        words = sentences[0].split()
        cut = _early_cut(words, first_piece_words)
        if cut:
            pieces[0:1] = [Piece(" ".join(words[:cut]), joins_next=True),
                           Piece(" ".join(words[cut:]), continues=True)]
    return pieces


def _early_cut(words: list[str], limit: int) -> int:
    """How many of ``words`` go in the first piece; 0: no cut."""
    if len(words) <= limit + 1:
        return 0
    cut = next((i for i in range(1, limit + 1) if words[i - 1][-1] in ",;:"), 0)
    if not cut:
        cut = next((i for i in range(limit, 1, -1) if words[i].lower() in _JOINING), limit)
        while cut > 2 and words[cut - 1].lower() in _LEADING:  # never "Yes I have a | new idea"
            cut -= 1
    return cut if len(words) - cut >= 2 else 0


def voiced_span(audio: np.ndarray) -> tuple[int, int] | None:
    """(first, last + 1) sample louder than a 30th of the peak (and than 200), or None for silence."""
    if not len(audio):
        return None
    level = np.abs(audio.astype(np.int32))
    voiced = np.nonzero(level > max(200, int(level.max()) // 30))[0]
    return (int(voiced[0]), int(voiced[-1]) + 1) if len(voiced) else None


def kept_span(audio: np.ndarray, piece: Piece, *, first: bool, last: bool, rate: int) -> tuple[int, int]:
    """The samples of one chunk of ``piece`` to keep: the silence where its sentence was cut trimmed to a gap.

    ``first``/``last``: the chunk begins/ends the piece.
    """
    start, end = 0, len(audio)
    lead, tail = first and piece.continues, last and piece.joins_next
    span = voiced_span(audio) if lead or tail else None
    if span is None:
        return start, end
    if lead:
        start = max(0, span[0] - round(KEEP_LEAD_S * rate))
    if tail:
        keep = KEEP_COMMA_S if piece.text[-1] in ",;:" else KEEP_JOIN_S
        end = min(len(audio), span[1] - 1 + round(keep * rate))
    return start, end


def id_timeline(phonemes: list[str], id_map: dict[str, list[int]], samples_per_id) -> list[tuple[str, int]]:
    """[(symbol, start sample)] from the samples each phoneme id lasts (``^`` first, ``$`` last); [] if they disagree.

    The ids are piper's ``phonemes_to_ids`` of ``phonemes``: each symbol's own
    ids and a pad after it (none after ``$``); a symbol missing from the map
    has no ids and no time.
    """
    pad = len(id_map.get("_", ()))
    timeline, at, index = [], 0, 0
    for symbol in (_BOS, *phonemes, _EOS):
        if symbol not in id_map:
            continue
        count = len(id_map[symbol]) + (pad if symbol != _EOS else 0)
        timeline.append((symbol, at))
        at += int(sum(samples_per_id[index:index + count]))
        index += count
    return timeline if index == len(samples_per_id) else []


def estimated_timeline(symbols: list[str], audio: np.ndarray) -> list[tuple[str, int]]:
    """[(symbol, start sample)] guessed: the voiced span shared by the symbols, pauses and marks weighing less."""
    first, last = voiced_span(audio) or (0, len(audio))
    weights = np.array([0.0 if s in _STRESS else 0.5 if s in _LENGTH or s == " " else 1.0 for s in symbols])
    if not weights.sum():
        return [(_BOS, 0), (_EOS, last)]
    starts = first + np.concatenate([[0.0], np.cumsum(weights)[:-1]]) * (last - first) / weights.sum()
    return [(_BOS, 0), *zip(symbols, (int(s) for s in starts), strict=True), (_EOS, last)]


def phoneme_starts(timeline: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """The timeline as the avatar reads phonemes: IPA letters, and "" for pauses (start, end, punctuation).

    A stress mark's time goes to the phoneme after it, and so does a word
    gap's: inside a sentence VITS gives the space its own frames, the
    transition into the next word, not a pause (the avatar's A/V offset on
    bench/avatar.py: |p95| 30 ms this way, 46 ms with the gap on the word
    before). Length marks extend the phoneme before them.
    """
    phonemes, carried_at = [], None  # where a stress mark or word gap before this phoneme began
    for symbol, start in timeline:
        if symbol in _STRESS or symbol == " ":
            carried_at = start if carried_at is None else carried_at
        elif symbol in _LENGTH or (len(symbol) == 1 and unicodedata.combining(symbol)):
            continue
        else:
            is_letter = symbol not in (_BOS, _EOS) and symbol.isalpha()
            phonemes.append((symbol if is_letter else "", carried_at if carried_at is not None else start))
            carried_at = None
    return phonemes


def word_starts(timeline: list[tuple[str, int]]) -> tuple[list[int], int]:
    """Where each spoken word starts (the first symbol after a word gap that is part of a word), and where speech ends."""
    starts, in_word, end = [], False, 0
    for symbol, start in timeline:
        if symbol in (" ", _BOS, _EOS):
            in_word = False
            end = start if symbol == _EOS else end
        elif not in_word and (symbol.isalpha() or symbol in _STRESS):
            starts.append(start)
            in_word = True
    return starts, max(end, starts[-1] if starts else 0)


def place_words(words: list[str], starts: list[int], end: int) -> list[tuple[str, int]]:
    """Each text word with a start: the spoken word's when the counts agree.

    Otherwise (espeak-ng reads "for a" as one word, "1990" as two) word ``i``
    of ``n`` starts ``i/n`` of the way through the spoken words' starts.
    """
    if not words or not starts:
        return [(w, 0) for w in words]
    if len(words) == len(starts):
        return list(zip(words, starts, strict=True))
    grid = np.interp(np.arange(len(words)) * len(starts) / len(words), np.arange(len(starts) + 1), [*starts, end])
    return [(w, int(s)) for w, s in zip(words, grid, strict=True)]
