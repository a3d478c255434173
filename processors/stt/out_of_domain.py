"""Out-of-domain rejection for a closed-domain decoder: a second, open-vocabulary pass.

A grammar (or phrase list) makes pocketsphinx answer every utterance with the
closest phrase, so an audiobook sentence comes out as "what time is it". To
catch that, the same audio is decoded at the same time with the general
language model, and the two passes are compared phone by phone: the open
pass's words (spelled in phones with the dictionary) against the phrase's
phones. An utterance is out of domain when the open pass heard more phones that
the phrase does not contain (the open pass's phones minus their longest
common subsequence with the phrase's) than ``margin`` times the phrase's own
phone count, and more than ``MIN_UNEXPLAINED_PHONES`` (the open pass inserts
a few phones on any utterance, which on a two-word phrase would otherwise
reach the margin). In-domain speech read by the open pass comes out shorter
than the phrase or about as long (it drops and confuses phones, espeak
speech most of all, but rarely invents many); a sentence forced onto a
short phrase leaves many phones unexplained.

Chosen by measurement (``bench/out_of_domain.py``): pocketsphinx's per-word
acoustic scores, and a phone-loop garbage alternative in the grammar (with
JSGF weights), both overlapped between espeak in-domain speech and human
out-of-domain speech; this comparison separated them. It costs a second
search per utterance (the open pass's CPU, about the real-time factor of the
language model) and a second decoder in the host process.
"""

from dataclasses import dataclass

#: Unexplained phones that never reject: on espeak's in-domain phrases the
#: open pass left up to 7 (bench/out_of_domain.py).
MIN_UNEXPLAINED_PHONES = 8

#: Words in a segmentation that are not speech: silences, fillers, null transitions.
_NON_SPEECH_PREFIXES = ("<", "[", "(NULL)")


@dataclass(frozen=True)
class Verdict:
    """The open pass's reading of one utterance."""

    out_of_domain: bool
    #: What the open-vocabulary pass heard (lower-case words), for the transcript of a rejected utterance.
    open_text: str
    open_words: list[tuple[str, float, float]]
    #: Phones the open pass heard outside the phrase, and the phrase's phone count.
    unexplained_phones: int
    phrase_phones: int


def speech_words(segments) -> list:
    """The segments of a pocketsphinx segmentation that are words (no silence or filler)."""
    return [s for s in segments or () if not s.word.startswith(_NON_SPEECH_PREFIXES)]


def phones(decoder, words: list[str]) -> list[str]:
    """The phones of ``words`` as the dictionary spells them (``what(2)`` is a variant)."""
    out: list[str] = []
    for word in words:
        pronunciation = decoder.lookup_word(word)
        if pronunciation:
            out.extend(pronunciation.split())
    return out


def common_subsequence(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence of ``a`` and ``b``."""
    row = [0] * (len(b) + 1)
    for x in a:
        previous = row[:]
        for j, y in enumerate(b, 1):
            row[j] = max(previous[j], row[j - 1], previous[j - 1] + (x == y))
    return row[-1]


class DomainCheck:
    """Runs the open-vocabulary pass beside the grammar pass and judges each utterance.

    Args:
        decoder: A pocketsphinx decoder searching with the general language model.
        margin: Reject when the unexplained phones exceed ``margin`` times the phrase's phones.
        frames_per_sec: The decoder's feature frames per second (word timings).
    """

    def __init__(self, decoder, margin: float, frames_per_sec: int):
        self._decoder = decoder
        self._margin = margin
        self._frames_per_sec = frames_per_sec

    def start(self) -> None:
        """Begin an utterance."""
        self._decoder.start_utt()

    def process(self, pcm: bytes) -> None:
        """Decode more of the utterance."""
        self._decoder.process_raw(pcm, False, False)

    def judge(self, phrase_words: list[str]) -> Verdict:
        """End the utterance and compare its open reading with ``phrase_words`` (dictionary variants).

        No phrase at all (the grammar reached no final state) with words in
        the open pass is out of domain too, so the speech still gets an answer.
        """
        self._decoder.end_utt()
        heard = speech_words(self._decoder.seg())
        heard_phones = phones(self._decoder, [s.word for s in heard])
        phrase_phones = phones(self._decoder, phrase_words)
        unexplained = len(heard_phones) - common_subsequence(phrase_phones, heard_phones)
        fps = self._frames_per_sec
        words = [(s.word.split("(")[0], s.start_frame / fps, s.end_frame / fps) for s in heard]
        return Verdict(
            out_of_domain=bool(heard_phones) and (
                not phrase_phones or unexplained > max(self._margin * len(phrase_phones), MIN_UNEXPLAINED_PHONES)
            ),
            open_text=" ".join(w for w, _, _ in words),
            open_words=words,
            unexplained_phones=unexplained,
            phrase_phones=len(phrase_phones),
        )
