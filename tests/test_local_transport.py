"""The ``local`` transport for real: the default agent at a sound card made of PulseAudio null sinks.

A PulseAudio daemon of the test's own (no system one, nothing left behind)
gives the machine two virtual devices: a "microphone" (the monitor of a null
sink the test plays a WAV into, remapped as a source) and a "speaker" (a null
sink whose monitor the test records). ``framegraph run`` of the default agent
on ``transport: {type: local}`` opens them through PyAudio/PortAudio and
ALSA's pulse plugin, as on a desk, hears configs/audio/question.wav and
answers into the speaker. Needs Debian's pulseaudio (and PortAudio to build
PyAudio) and the ``local`` extra: ``scripts/setup.sh --test`` installs them.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
import wave
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
QUESTION = ROOT / "configs" / "audio" / "question.wav"
#: Recording rate of the speaker's monitor.
RATE = 16000


def _pulse_env(folder: Path) -> dict[str, str]:
    """The environment that points PulseAudio's clients (and ALSA's pulse plugin) at the test's daemon."""
    return {**os.environ, "PULSE_SERVER": f"unix:{folder / 'native'}", "PULSE_RUNTIME_PATH": str(folder / "run"),
            "PULSE_STATE_PATH": str(folder / "state"), "HOME": str(folder)}


@contextmanager
def pulseaudio(folder: Path):
    """A PulseAudio daemon with a virtual microphone and speaker; yields its environment; stops it after.

    ``-n`` loads no default modules (no hardware, no system configuration);
    the native protocol on a socket in ``folder`` with anonymous access works
    as root too, where a per-user daemon is otherwise refused.
    """
    for tool in ("pulseaudio", "pactl", "paplay", "parec"):
        assert shutil.which(tool), f"{tool} is missing: run scripts/setup.sh --test (Debian pulseaudio, pulseaudio-utils)"
    env = _pulse_env(folder)
    for sub in ("run", "state"):
        (folder / sub).mkdir()
    log = (folder / "pulseaudio.log").open("w")
    daemon = subprocess.Popen(
        ["pulseaudio", "--daemonize=no", "--exit-idle-time=-1", "-n", "--use-pid-file=no", "--disable-shm=yes",
         f"--load=module-native-protocol-unix socket={folder / 'native'} auth-anonymous=1",
         "--load=module-null-sink sink_name=speaker",
         "--load=module-null-sink sink_name=microphone_in",
         "--load=module-remap-source source_name=microphone master=microphone_in.monitor"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while subprocess.run(["pactl", "info"], env=env, capture_output=True).returncode != 0:
            assert daemon.poll() is None and time.monotonic() < deadline, (folder / "pulseaudio.log").read_text()
            time.sleep(0.1)
        for command in (["set-default-sink", "speaker"], ["set-default-source", "microphone"]):
            subprocess.run(["pactl", *command], env=env, check=True)
        yield env
    finally:
        daemon.terminate()
        wait_or_kill(daemon, 10)
        log.close()


def wait_or_kill(process: subprocess.Popen, timeout: float) -> None:
    """Waits up to ``timeout`` s for ``process`` to end (after it was asked to), then kills it."""
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def _streams(env: dict[str, str], kind: str) -> list[str]:
    listed = subprocess.run(["pactl", "list", "short", kind], env=env, capture_output=True, text=True, check=True)
    return [line for line in listed.stdout.splitlines() if "protocol-native" in line]


def _recorded_secs(raw: Path) -> float:
    return raw.stat().st_size / 2 / RATE


def _voiced_seconds(raw: Path) -> np.ndarray:
    """Start times (s) of the 100 ms windows of the recording (raw 16-bit mono) that hold sound."""
    data = raw.read_bytes()
    samples = np.frombuffer(data[:len(data) // 2 * 2], dtype=np.int16).astype(np.float64)
    window = RATE // 10
    energy = np.array([np.sqrt(np.mean(samples[i:i + window] ** 2)) for i in range(0, len(samples) - window, window)])
    return np.flatnonzero(energy > 300) / 10


def local_agent(folder: Path) -> Path:
    """configs/assistant.yaml with ``transport: {type: local}`` at the same rates."""
    text = (ROOT / "configs" / "assistant.yaml").read_text()
    start, end = text.index("transport:\n"), text.index("context:\n")
    path = folder / "local_assistant.yaml"
    path.write_text(text[:start] + "transport: {type: local, audio_in_sample_rate: 16000, audio_out_sample_rate: 24000}\n"
                    + text[end:])
    return path


@pytest.mark.timeout(300)
def test_the_default_agent_hears_a_virtual_microphone_and_answers_into_a_virtual_speaker(tmp_path):
    with pulseaudio(tmp_path) as env:
        recording = tmp_path / "speaker.raw"
        with recording.open("wb") as raw:
            recorder = subprocess.Popen(["parec", "-d", "speaker.monitor", f"--rate={RATE}", "--channels=1",
                                         "--format=s16le", "--raw"], env=env, stdout=raw)
        agent_log = (tmp_path / "agent.log").open("w")
        agent = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "run", str(local_agent(tmp_path))],
                                 cwd=ROOT, env=env, stdout=agent_log, stderr=subprocess.STDOUT)
        try:
            # The agent is listening once PortAudio opened its microphone (a recording stream besides parec's).
            deadline = time.monotonic() + 120
            while len(_streams(env, "source-outputs")) < 2:
                assert agent.poll() is None and time.monotonic() < deadline, (tmp_path / "agent.log").read_text()[-3000:]
                time.sleep(0.2)
            time.sleep(1.0)  # let it settle: the recording so far is the silence before the question
            asked_at = _recorded_secs(recording)
            subprocess.run(["paplay", "-d", "microphone_in", str(QUESTION)], env=env, check=True, timeout=60)
            with wave.open(str(QUESTION)) as wav:
                question_secs = wav.getnframes() / wav.getframerate()
            # Wait (bounded) until the speaker has carried at least a second of the bot's voice, then a pause.
            deadline = time.monotonic() + 90
            while True:
                voiced = _voiced_seconds(recording)
                if len(voiced) >= 10 and voiced[-1] < _recorded_secs(recording) - 1.0:
                    break
                assert agent.poll() is None and time.monotonic() < deadline, (
                    f"no answer on the speaker; voiced windows at {voiced}\n"
                    + (tmp_path / "agent.log").read_text()[-3000:])
                time.sleep(0.5)
        finally:
            agent.send_signal(signal.SIGINT)  # Ctrl-C, as at a desk
            wait_or_kill(agent, 30)
            agent_log.close()
            recorder.terminate()
            recorder.wait(10)
        assert agent.returncode in (0, 130), (tmp_path / "agent.log").read_text()[-3000:]
    # Only the bot reaches the speaker (the question went into the microphone): silence until it was asked,
    # then its answer, which starts once most of the question was heard.
    assert voiced[0] > asked_at + 0.5 * question_secs, (voiced, asked_at, question_secs)
