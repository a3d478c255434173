"""The audio clock of ``pipelines.av_sync``: which clock time a held frame's sample plays at.

A sound-card-like output whose chunks go where a test says (as the file
output places them on its timeline); no pipeline, only the mixin's
bookkeeping, so the order of writes and releases is the test's.
"""

from pipecat.frames.frames import OutputAudioRawFrame

from pipelines.av_sync import AudioClockedOutput

RATE = 24000
CHUNK = 960  # 40 ms


class PlacedOutput(AudioClockedOutput):
    """Plays each chunk at the clock time the test gives it."""

    sample_rate = RATE

    def __init__(self):
        super().__init__()
        self.place = 0.0

    def audio_clock(self) -> float:
        return self.place

    def playing_after_write(self, first: int, end: int) -> tuple[float, int]:
        return self.place, first

    async def write(self, at: float) -> None:
        self.place = at
        self._entered = max(self._entered, self._written + CHUNK)

        async def taken() -> bool:
            return True

        await self.clocked_write(OutputAudioRawFrame(bytes(2 * CHUNK), RATE, 1), taken())


async def test_a_sample_plays_when_its_own_chunk_does_not_the_latest():
    out = PlacedOutput()
    await out.write(1.0)
    out._held.append((CHUNK // 2, object()))  # a frame for the first chunk's middle, not released yet
    await out.write(2.0)  # the stream underran: a second of silence before this chunk
    assert out._due(CHUNK // 2) == 1.0 + CHUNK / 2 / RATE
    assert out._due(CHUNK + 240) == 2.0 + 240 / RATE


async def test_a_frame_before_audio_not_yet_written_waits_for_its_write():
    out = PlacedOutput()
    out._entered = CHUNK  # its audio entered the output, the write is still to come
    assert out._due(0) is None
    await out.write(0.7)
    assert out._due(0) == 0.7


async def test_a_frame_after_all_the_audio_belongs_to_its_end():
    out = PlacedOutput()
    await out.write(1.0)
    assert out._due(CHUNK) == 1.0 + CHUNK / RATE
