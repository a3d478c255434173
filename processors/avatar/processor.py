"""The avatar processor: the bot's speech in, face poses (and a rendered face) out, in step with the audio.

It sits between the TTS and the output. For each bot reply (an utterance:
one TTS context) it counts the audio samples it passes on; that count is the
timeline every pose is stamped on (:class:`PoseFrame`). It re-slices the
audio at pose boundaries and pushes each pose just before the sample it
belongs to, so the output transport, which handles queued frames in order
with the audio it plays, sends a pose (or shows a rendered frame) as its
audio goes out.

A pose at time ``t`` needs the phonemes up to ``t + lookahead`` (the
coarticulation blends in the next sound before it starts), so the avatar
holds back that much audio until the TTS has produced more, the reply ends,
a non-audio frame follows, or ``hold_ms`` pass with nothing new (checked each
frame period).

Between replies a clock task draws idle poses (blinks, gaze, brows) at the
same rate, skipping those that differ from the last pose by less than one
step of the wire format's quantisation (a client keeps showing the last one,
and pipecat's video output keeps repeating the last frame). On an interruption the pending audio and phonemes are dropped and
the face eases from what was on screen (the pose whose audio was playing) to
neutral within 100 ms, through poses the avatar makes itself after the
interruption, so none of them is stale.
"""

import asyncio
import math
import time
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    CancelFrame,
    EndFrame,
    Frame,
    InterruptionFrame,
    OutputAudioRawFrame,
    StartFrame,
    SystemFrame,
    TTSAudioRawFrame,
    TTSStoppedFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from pipelines.interruptions.guard import turn_free
from processors.avatar.coarticulation import AudioTrack, PhonemeTrack
from processors.avatar.face import FaceLife
from processors.avatar.frames import FaceImageFrame, PoseFrame, PoseMessageFrame
from processors.avatar.renderer import FaceRenderer
from processors.avatar.visemes import BLENDSHAPES, VISEMES
from processors.avatar.wire import rtvi_message

try:
    from processors.tts.espeak import PhonemeFrame

    _PHONEMES: tuple[type[Frame], ...] = (PhonemeFrame,)
except ImportError:  # no espeak-ng (the speech extra): no TTS here times its phonemes
    _PHONEMES = ()

#: The face is back to neutral this long after an interruption.
EASE_SECS = 0.1
#: The audio-driven mouth is read this far ahead, to make up for its smoothing lag.
_AUDIO_LEAD = 0.02
#: One step of the wire format's quantisation: an idle pose closer than this to the last is not sent.
_UNSEEN = 1 / 255


class AvatarOutput(StrEnum):
    """What the avatar sends besides its own ``PoseFrame``s."""

    POSES = "poses"  # each pose also as an RTVI server message, in order with the audio
    VIDEO = "video"  # a rendered face as OutputImageRawFrames (the transport's video track)
    POSES_AND_VIDEO = "poses_and_video"
    FRAMES = "frames"  # PoseFrames only: tests, and 3D clients downstream of the graph


class PoseSource(StrEnum):
    """Where the mouth comes from."""

    AUTO = "auto"  # the TTS's phonemes when it gives them, else the audio
    PHONEMES = "phonemes"
    AUDIO = "audio"


@dataclass
class _Utterance:
    """One bot reply as the avatar sees it: its timeline, its held-back audio, its mouth."""

    number: int
    context_id: str | None
    phonemes: PhonemeTrack = field(default_factory=PhonemeTrack)
    audio: AudioTrack | None = None  # set when the mouth follows the audio
    sample_rate: int = 0
    channels: int = 1
    audio_type: type[OutputAudioRawFrame] = TTSAudioRawFrame
    destination: str | None = None
    pending: bytearray = field(default_factory=bytearray)
    received: int = 0  # samples received
    pushed: int = 0  # samples pushed on
    next_pose: int = 0
    anchor: float | None = None  # time.monotonic() when its sample 0 started playing
    shown: list[tuple[float, np.ndarray]] = field(default_factory=list)  # (time_s, weights) pushed

    @property
    def received_s(self) -> float:
        return self.received / self.sample_rate if self.sample_rate else 0.0

    def visemes_at(self, t: float) -> np.ndarray:
        if self.audio is not None:
            return self.audio.weights_at(t + _AUDIO_LEAD)
        return self.phonemes.weights_at(t)

    def on_screen(self, now: float) -> np.ndarray | None:
        """The pose whose audio is playing at ``now``, if this utterance is playing."""
        if self.anchor is None or not self.shown:
            return None
        playhead = now - self.anchor
        times = [t for t, _ in self.shown]
        i = max(0, np.searchsorted(times, playhead, side="right") - 1)
        return self.shown[i][1]


class AvatarProcessor(FrameProcessor):
    """Turns the bot's speech into ARKit face poses at ``fps``, and optionally into video.

    Args:
        fps: Poses (and video frames) per second.
        output: What goes out besides ``PoseFrame``s (:class:`AvatarOutput`).
        size: Side of the rendered video frame, in pixels.
        source: Where the mouth comes from (:class:`PoseSource`).
        lookahead_ms: Phoneme look-ahead for coarticulation (audio held back until known).
        hold_ms: Longest wait for more audio before held-back audio goes out anyway.
        max_change_per_s: Largest change of any weight per second (bounds the per-frame step).
        blinks: Whether the eyes blink.
        idle_motion: Whether eyes and brows move slightly.
        seed: Seeds blinks and idle motion (None: random).
        **kwargs: Passed to ``FrameProcessor`` (``name``...).
    """

    def __init__(self, *, fps: int = 30, output: AvatarOutput = AvatarOutput.POSES, size: int = 256,
                 source: PoseSource = PoseSource.AUTO, lookahead_ms: int = 120, hold_ms: int = 40,
                 max_change_per_s: float = 12.0, blinks: bool = True, idle_motion: bool = True,
                 seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.fps = fps
        self._dt = 1.0 / fps
        self._source = PoseSource(source)
        self._lookahead = lookahead_ms / 1000
        self._hold = hold_ms / 1000
        self.max_step = max_change_per_s / fps
        self.ease_frames = max(1, math.floor(EASE_SECS * fps + 1e-9))
        self._life = FaceLife(blinks=blinks, idle_motion=idle_motion, seed=seed)
        self._size = size
        self._renderer: FaceRenderer | None = None
        self._set_output(AvatarOutput(output))
        self._drawn = self._renderer is not None  # built to draw: the transport was given a video track for it
        self._face_t = 0.0
        self._last = np.zeros(len(BLENDSHAPES[0]), dtype=np.float32)  # the face now
        self._pushed = self._last  # the last pose pushed
        self._before_speech = self._last  # the face on screen when the bot started a reply
        self._utterance: _Utterance | None = None
        self._playing: list[_Utterance] = []  # utterances whose audio may still be playing
        self._count = 0
        self._speaking = False
        self._ease: list[np.ndarray] = []
        self._lock = asyncio.Lock()
        self._clock_task: asyncio.Task | None = None
        self._audio_at = 0.0  # time.monotonic() of the last bot audio received

    def _set_output(self, output: AvatarOutput) -> None:
        self._output = output
        video = output in (AvatarOutput.VIDEO, AvatarOutput.POSES_AND_VIDEO)
        self._renderer = (self._renderer or FaceRenderer(self._size)) if video else None
        self._messages = output in (AvatarOutput.POSES, AvatarOutput.POSES_AND_VIDEO)

    def retune(self, params) -> None:
        """Takes a new ``output`` while running (the load level's DEGRADED: poses only, no rendered face).

        The next pose goes out as ``params.output`` says; the transport's
        video track, when there is one, keeps showing the last face drawn.
        An avatar built without drawing (its session started at DEGRADED: the
        transport has no video track) does not start drawing; it sends its
        poses. The other params stay as built.
        """
        output = AvatarOutput(params.output)
        if not self._drawn and output in (AvatarOutput.VIDEO, AvatarOutput.POSES_AND_VIDEO):
            output = AvatarOutput.POSES
        self._set_output(output)

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        """Consumes phonemes, re-slices bot audio between poses, eases to neutral on interruptions."""
        await super().process_frame(frame, direction)
        downstream = direction == FrameDirection.DOWNSTREAM
        if isinstance(frame, StartFrame):
            await self.push_frame(frame, direction)
            self._clock_task = self.create_task(self._clock(), "avatar-clock")
        elif isinstance(frame, (EndFrame, CancelFrame)):
            if isinstance(frame, EndFrame):
                await self._finish_utterance()
            await self._stop_tasks()
            await self.push_frame(frame, direction)
        elif isinstance(frame, InterruptionFrame):
            await self.push_frame(frame, direction)
            await self._interrupted()
        elif isinstance(frame, BotStartedSpeakingFrame):
            self._bot_started()
            await self.push_frame(frame, direction)
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._bot_stopped()
            await self.push_frame(frame, direction)
        elif downstream and isinstance(frame, _PHONEMES):
            (await self._open_utterance(frame.context_id)).phonemes.add(frame.phoneme, frame.offset_ms / 1000)
        elif downstream and isinstance(frame, OutputAudioRawFrame) and frame.audio:
            await self._on_audio(frame)
        elif downstream and isinstance(frame, TTSStoppedFrame):
            await self._finish_utterance()
            await self.push_frame(frame, direction)
        elif downstream and not isinstance(frame, SystemFrame):
            await self._flush()  # what follows the held-back audio stays behind it
            await self.push_frame(frame, direction)
        else:
            await self.push_frame(frame, direction)

    # Utterances

    async def _open_utterance(self, context_id: str | None) -> _Utterance:
        """The current utterance, or a new one for a new TTS context."""
        u = self._utterance
        if u is not None and (context_id is None or context_id == u.context_id):
            return u
        if u is not None:  # a new context without a stop frame: the old one is over
            await self._finish_utterance()
        self._count += 1
        u = _Utterance(self._count, context_id)
        previous = self._playing[-1] if self._playing else None
        if previous is None:
            self._before_speech = self._last
        elif previous.anchor is not None:
            # Its audio plays right after the previous reply's.
            u.anchor = max(time.monotonic(), previous.anchor + previous.received_s)
        self._utterance = u
        self._playing.append(u)
        self._speaking = True
        return u

    async def _on_audio(self, frame: OutputAudioRawFrame) -> None:
        u = await self._open_utterance(getattr(frame, "context_id", None))
        if not u.sample_rate:
            u.sample_rate, u.channels, u.audio_type = frame.sample_rate, frame.num_channels, type(frame)
            u.destination = frame.transport_destination
            if self._source == PoseSource.AUDIO or (self._source == PoseSource.AUTO and not u.phonemes):
                u.audio = AudioTrack(frame.sample_rate)
        u.pending += frame.audio
        u.received += len(frame.audio) // (2 * u.channels)
        if u.audio is not None:
            u.audio.feed(_mono(frame.audio, u.channels))
            until = u.audio.known_until - _AUDIO_LEAD
        else:
            until = u.received_s - self._lookahead
        async with self._lock:
            await self._emit(u, until)
        self._audio_at = time.monotonic()

    async def _emit(self, u: _Utterance, until: float) -> None:
        """Pushes the poses of ``u`` up to ``until`` seconds, each before the audio sample it belongs to."""
        while (t := u.next_pose * self._dt) <= until:
            sample = round(t * u.sample_rate)
            if sample > u.received or u is not self._utterance:  # interrupted meanwhile: nothing stale
                return
            await self._push_audio(u, sample)
            visemes = u.visemes_at(t)
            weights = self._step(visemes @ BLENDSHAPES + self._life.at(self._face_t))
            u.shown.append((t, weights))
            await self._push_pose(PoseFrame(weights=weights, utterance=u.number, time_s=t, sample=sample,
                                            viseme=VISEMES[int(np.argmax(visemes))]))
            u.next_pose += 1
        if u is self._utterance:
            await self._push_audio(u, min(u.received, max(u.pushed, math.floor(until * u.sample_rate))))

    async def _push_audio(self, u: _Utterance, upto: int) -> None:
        """Pushes ``u``'s held audio up to sample ``upto``."""
        count = upto - u.pushed
        if count <= 0:
            return
        size = count * 2 * u.channels
        audio = bytes(u.pending[:size])
        del u.pending[:size]
        u.pushed = upto
        if issubclass(u.audio_type, TTSAudioRawFrame):
            frame = u.audio_type(audio, u.sample_rate, u.channels, context_id=u.context_id)
        else:
            frame = u.audio_type(audio, u.sample_rate, u.channels)
        frame.transport_destination = u.destination
        await self.push_frame(frame)

    async def _flush(self) -> None:
        """Pushes everything held back, poses up to the end of the audio received."""
        u = self._utterance
        if u is not None and u.sample_rate:
            async with self._lock:
                await self._emit(u, u.received_s)

    async def _finish_utterance(self) -> None:
        """The reply is over: its last poses and audio go out; the mouth closes after them."""
        u = self._utterance
        if u is None:
            return
        u.phonemes.end(u.received_s)
        await self._flush()
        if self._utterance is u:
            self._utterance = None

    # Playback, as the output transport reports it

    def _bot_started(self) -> None:
        now = time.monotonic()
        for u in self._playing:
            if u.anchor is None:
                u.anchor = now
                break

    def _bot_stopped(self) -> None:
        self._playing = [p for p in self._playing if p is self._utterance]
        if self._utterance is None:
            self._speaking = False

    # Interruptions

    async def _interrupted(self) -> None:
        """Drops the interrupted speech and eases the face from what was on screen to neutral."""
        now = time.monotonic()
        on_screen = next((p for u in reversed(self._playing) if (p := u.on_screen(now)) is not None), None)
        was_speaking = bool(self._playing)
        self._utterance = None
        self._playing = []
        self._speaking = False
        if not was_speaking:
            return
        # Nothing of the reply has played yet: the face is still the one from before it.
        start = self._before_speech if on_screen is None else on_screen
        target = self._life.at(self._face_t)
        n = self.ease_frames
        self._ease = [start + (target - start) * (k / n) for k in range(1, n + 1)]
        async with self._lock:
            await self._idle_pose()  # the first at once; the clock pushes the rest

    # Idle and easing poses

    async def _clock(self) -> None:
        """Pushes a pose every frame period while the bot is not speaking; releases audio held too long."""
        loop = asyncio.get_running_loop()
        tick = loop.time()
        while True:
            tick += self._dt
            delay = tick - loop.time()
            if delay < -self._dt:  # fell behind (a busy loop): skip ahead rather than burst
                tick, delay = loop.time(), 0.0
            await asyncio.sleep(max(0.0, delay))
            u = self._utterance
            if u is not None and u.pushed < u.received and time.monotonic() - self._audio_at >= self._hold:
                async with self._lock:
                    if u is self._utterance:
                        await self._emit(u, u.received_s)
            if not self._speaking:
                async with self._lock:
                    if not self._speaking:
                        await self._idle_pose()

    async def _idle_pose(self) -> None:
        """The next idle (or easing) pose; one no client could tell from the last pushed is skipped."""
        if self._ease:
            weights = self._ease.pop(0).astype(np.float32)
            self._last = weights
        else:
            weights = self._step(self._life.at(self._face_t))
            if np.max(np.abs(weights - self._pushed)) < _UNSEEN:
                self._face_t += self._dt
                return
        await self._push_pose(PoseFrame(weights=weights, utterance=0, time_s=self._face_t))

    # Shared

    def _step(self, target: np.ndarray) -> np.ndarray:
        """The next pose toward ``target``, each weight moving at most ``max_step`` from the last pose."""
        weights = (self._last + np.clip(target - self._last, -self.max_step, self.max_step)).astype(np.float32)
        np.clip(weights, 0.0, 1.0, out=weights)
        self._last = weights
        return weights

    async def _push_pose(self, pose: PoseFrame) -> None:
        self._face_t += self._dt
        self._pushed = pose.weights
        # Idle and easing poses belong to no reply: an interruption of the last one must not cut them.
        mark = turn_free if pose.utterance == 0 else _same
        await self.push_frame(mark(pose))
        if self._messages:
            await self.push_frame(mark(PoseMessageFrame(message=rtvi_message(pose))))
        if self._renderer is not None:
            size = self._renderer.size
            image = FaceImageFrame(image=self._renderer.render(pose.weights), size=(size, size), format="RGB")
            image.sync_with_audio = True
            await self.push_frame(mark(image))
            await asyncio.sleep(0)  # a reply's frames render in a burst: let the loop breathe

    async def _stop_tasks(self) -> None:
        if self._clock_task is not None:
            await self.cancel_task(self._clock_task)
            self._clock_task = None

    async def cleanup(self):
        """Stops the clock when the pipeline is torn down without an end frame."""
        await self._stop_tasks()
        await super().cleanup()


def _same(frame: Frame) -> Frame:
    return frame


def _mono(pcm: bytes, channels: int) -> bytes:
    """The first channel of interleaved 16-bit PCM."""
    if channels == 1:
        return pcm
    return np.frombuffer(pcm, dtype=np.int16)[::channels].tobytes()
