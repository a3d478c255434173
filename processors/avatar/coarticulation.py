"""Viseme tracks: how much of each viseme the mouth shows at any time of an utterance.

Two sources, one shape of answer (a weight per viseme, summing to 1):

- :class:`PhonemeTrack`, from the TTS's timed phonemes, blends neighbours with
  Cohen and Massaro's dominance model: each phoneme pulls the mouth toward its
  viseme with a strength that peaks at its start (a plateau through a long
  sound) and decays exponentially before it (anticipation, 30 ms) and after it
  (release, 15 ms: a sound gives way quickly to the next), so a pose melts
  into the next instead of snapping, the lips still close for a ``p``, and a
  tongue consonant borrows the vowel around it. The decay reaches into the
  future, which is why the avatar waits for ``lookahead`` of phonemes before
  it draws a pose.
- :class:`AudioTrack`, from the audio alone (any TTS): per 10 ms hop of a
  20 ms window, loudness opens the jaw and the spectral shape picks the lips
  (high-band energy: a fricative, ``SS``; energy in the second-formant band: a
  spread vowel, ``E``; low energy there: a rounded one, ``oh``), smoothed with
  a fast attack and a slower release.
"""

import bisect

import numpy as np

from processors.avatar.visemes import DOMINANCE, SILENCE, VISEMES, visemes_for

N_VISEMES = len(VISEMES)
_SILENT = np.eye(N_VISEMES, dtype=np.float32)[SILENCE]


class PhonemeTrack:
    """Timed phonemes of one utterance, blended into viseme weights.

    Args:
        onset: Seconds after a phoneme's start at which its viseme peaks.
        anticipation: Time constant (s) of a phoneme's dominance before its peak: how early the
            mouth starts shaping a coming sound.
        release: Time constant (s) of its dominance after its plateau: how long a sound lingers.
        tail: Shortest time before a long segment's end at which its plateau stops.
    """

    #: Duration assumed for the last phoneme until the next one (or the end) is known.
    DEFAULT_DURATION = 0.1

    def __init__(self, *, onset: float = 0.0, anticipation: float = 0.03, release: float = 0.015,
                 tail: float = 0.07):
        self._onset, self._tail = onset, tail
        self._before, self._after = anticipation, release
        self._phonemes: list[tuple[float, list[int]]] = []
        self._end: float | None = None
        self._segments: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def __bool__(self) -> bool:
        return bool(self._phonemes)

    def add(self, phoneme: str, start: float) -> None:
        """Adds a phoneme starting ``start`` seconds into the utterance (starts arrive in order)."""
        self._phonemes.append((start, visemes_for(phoneme)))
        self._segments = None

    def end(self, at: float) -> None:
        """Marks the utterance's audio end: silence from there on."""
        self._end = at
        self._segments = None

    def _build(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(core start, core end, viseme) per segment, a diphthong's parts splitting its duration."""
        # Silence until the first phoneme: the mouth opens into it, not from it.
        starts, ends, visemes = [-np.inf], [self._phonemes[0][0]], [SILENCE]
        for i, (start, parts) in enumerate(self._phonemes):
            if i + 1 < len(self._phonemes):
                stop = self._phonemes[i + 1][0]
            else:
                stop = self._end if self._end is not None else start + self.DEFAULT_DURATION
            share = max(stop - start, 0.0) / len(parts)
            for j, viseme in enumerate(parts):
                a = start + j * share
                core_start = a + min(self._onset, share / 2)
                starts.append(core_start)
                ends.append(max(core_start, a + share - self._tail))
                visemes.append(viseme)
        if self._end is not None:
            starts.append(self._end)
            ends.append(np.inf)
            visemes.append(SILENCE)
        return np.array(starts), np.array(ends), np.array(visemes, dtype=np.int64)

    def weights_at(self, t: float) -> np.ndarray:
        """Viseme weights at ``t`` seconds into the utterance (silence before the first phoneme)."""
        if not self._phonemes:
            return _SILENT
        if self._segments is None:
            self._segments = self._build()
        starts, ends, visemes = self._segments
        lo = bisect.bisect_left(ends, t - 5 * self._after)  # core ends never decrease
        hi = bisect.bisect_right(starts, t + 5 * self._before)
        weights = _SILENT * 1e-3  # a faint pull to rest where no phoneme reaches
        if lo < hi:
            ahead = np.maximum(starts[lo:hi] - t, 0.0) / self._before
            behind = np.maximum(t - ends[lo:hi], 0.0) / self._after
            dominance = DOMINANCE[visemes[lo:hi]] * np.exp(-(ahead + behind))
            weights = weights + np.bincount(visemes[lo:hi], weights=dominance, minlength=N_VISEMES)
        return (weights / weights.sum()).astype(np.float32)


class AudioTrack:
    """Viseme weights derived from 16-bit mono PCM as it streams in.

    Args:
        sample_rate: The audio's sample rate.
        hop: Seconds between analyses (10 ms).
        window: Seconds of audio per analysis (20 ms, Hann-windowed).
        attack: Smoothing time constant while the mouth opens.
        release: Smoothing time constant while it closes.
        gate_db: Level (dBFS) under which the audio counts as silence.
        range_db: Loudness range below the running peak that maps onto jaw opening.
    """

    def __init__(self, sample_rate: int, *, hop: float = 0.01, window: float = 0.02, attack: float = 0.02,
                 release: float = 0.06, gate_db: float = -55.0, range_db: float = 30.0):
        self.sample_rate = sample_rate
        self._hop = max(1, round(hop * sample_rate))
        self._window = max(self._hop, round(window * sample_rate))
        self._taper = np.hanning(self._window).astype(np.float32)
        freqs = np.fft.rfftfreq(self._window, 1 / sample_rate)
        self._bands = [(freqs >= lo) & (freqs < hi) for lo, hi in ((100, 900), (900, 2500), (3000, 8000))]
        self._up = 1 - np.exp(-hop / attack)
        self._down = 1 - np.exp(-hop / release)
        self._gate_db, self._range_db = gate_db, range_db
        self._peak_db = -20.0
        self._peak_decay = 6.0 * hop  # dB per hop: the reference level follows a quieter voice
        self._pending = np.zeros(0, dtype=np.float32)
        self._consumed = 0  # samples before _pending's first
        self._state = _SILENT.copy()
        self._times: list[float] = []
        self._weights: list[np.ndarray] = []

    def feed(self, pcm: bytes) -> None:
        """Analyses the new audio, one hop at a time."""
        samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0
        buf = np.concatenate([self._pending, samples])
        offset = 0
        while offset + self._window <= len(buf):
            self._analyse(buf[offset:offset + self._window], self._consumed + offset)
            offset += self._hop
        self._pending = buf[offset:]
        self._consumed += offset

    def _analyse(self, frame: np.ndarray, first_sample: int) -> None:
        rms = float(np.sqrt(np.mean(frame * frame)))
        level_db = 20 * np.log10(rms + 1e-9)
        self._peak_db = max(self._peak_db - self._peak_decay, level_db)
        loud = 0.0 if level_db < self._gate_db else float(np.clip(
            (level_db - (self._peak_db - self._range_db)) / self._range_db, 0.0, 1.0))
        power = np.abs(np.fft.rfft(frame * self._taper)) ** 2
        low, mid, high = (float(power[band].sum()) + 1e-12 for band in self._bands)
        fricative = high / (low + mid + high)
        bright = mid / (low + mid)
        rounded = float(np.clip((0.45 - bright) / 0.3, 0.0, 1.0))
        voiced = loud * (1 - fricative)
        target = np.zeros(N_VISEMES, dtype=np.float32)
        target[SILENCE] = 1 - loud
        target[VISEMES.index("SS")] = loud * fricative
        target[VISEMES.index("E")] = voiced * bright
        target[VISEMES.index("aa")] = voiced * (1 - bright) * (1 - rounded)
        target[VISEMES.index("oh")] = voiced * (1 - bright) * rounded
        opening = target[SILENCE] < self._state[SILENCE]
        self._state += (self._up if opening else self._down) * (target - self._state)
        self._times.append((first_sample + self._window / 2) / self.sample_rate)
        self._weights.append(self._state.copy())

    @property
    def known_until(self) -> float:
        """The latest time (s) with an analysis; -1 before the first."""
        return self._times[-1] if self._times else -1.0

    def weights_at(self, t: float) -> np.ndarray:
        """Viseme weights at ``t`` seconds, interpolated between hops (silence before the first)."""
        times = self._times
        if not times or t <= times[0]:
            return self._weights[0] if times and t > 0 else _SILENT
        i = bisect.bisect_left(times, t)
        if i >= len(times):
            return self._weights[-1]
        a = (t - times[i - 1]) / (times[i] - times[i - 1])
        return (1 - a) * self._weights[i - 1] + a * self._weights[i]
