"""``framegraph check``: passes on every shipped config, fails naming a processor that swallows interruptions."""

import asyncio
import re
from pathlib import Path

import pytest
from pipecat.frames.frames import InterruptionFrame, TextFrame

from pipelines.cli import main
from pipelines.interruptions.check import NOT_CHECKED
from pipelines.interruptions.conformance import run_check
from pipelines.testing import AgentHarness
from pipelines.validate import load_agent, load_agent_text

ROOT = Path(__file__).resolve().parent.parent

CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
SWALLOW = ROOT / "tests" / "broken_interruptions" / "swallow.yaml"


@pytest.fixture
def offline_llm_endpoint(monkeypatch):
    """configs/openai.yaml builds with a dummy key and an endpoint that refuses connections (no network)."""
    monkeypatch.setenv("OPENAI_API_KEY", "dummy-key-for-offline-check")
    monkeypatch.setenv("LLM_BASE_URL", "http://127.0.0.1:9/v1")


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
async def test_check_passes_on_every_shipped_config(path, offline_llm_endpoint):
    report = await run_check(load_agent(path))
    assert report.ok, report.violations
    assert report.interruptions, "the scenario interrupted nothing"
    for line in report.processors:
        assert len(line.stats.seen) == len(report.interruptions), line


async def test_check_sees_every_barge_in_of_the_default_agent():
    report = await run_check(load_agent(ROOT / "configs" / "assistant.yaml"))
    origins = [i.origin for i in report.interruptions]
    # The user's first words interrupt nothing new after the API's interruption, so they may join it;
    # both barge-ins (mid-LLM, mid-TTS) are interruptions of their own.
    assert origins[0] == "api" and origins[1:] in (["user_context"] * 2, ["user_context"] * 3), origins
    assert report.notes == []
    assert report.markers == (5, 5)


def test_check_fails_naming_the_processor_that_swallows_interruptions(capsys):
    assert main(["check", str(SWALLOW)]) == 1
    err = capsys.readouterr().err
    assert "VIOLATION swallow: flushed on 0 of 1 interruptions" in err
    assert "VIOLATION normalize" not in err and "VIOLATION tail" not in err


BROKEN = ROOT / "tests" / "broken_interruptions"


@pytest.mark.parametrize("name,violation", [
    # Caught: check passed a TTS whose audio task kept making audio for the cut text (it played inside the
    # check's own window and was reported as 40 ms).
    ("leaky_tts", "VIOLATION tts: kept pushing stale work after processing the interruption"),
    # Caught: "uninterruptible markers through the output: 1 of 5" was printed and the check still said PASS.
    # How many of the 5 reach ``hold`` before its flush depends on timing; that it drops some (not all) does not.
    ("drop_uninterruptible", re.compile(r"VIOLATION hold: dropped [1-4] of 5 uninterruptible frames it was given")),
    # Caught: a flush was counted whenever the flush method was called, so a flush that does nothing passed.
    ("noop_flush", "VIOLATION slow: its flush ran but flushed nothing on 1 interruptions"),
    # Caught (issue 20, item 6): with no context block there was no turn, and check passed a TTS whose task went
    # on with the cut text (440 ms of it played inside the check's own window).
    ("leaky_tts_no_context", "VIOLATION tts: kept pushing stale work after processing the interruption"),
    # The same TTS when its audio does not say which text it speaks: the guard cannot tell it from new speech,
    # and check fails on what it hears.
    ("untraced_leaky_tts", "VIOLATION tts: "),
    # Caught (item 7): check blamed the (correct) espeak TTS for what the processor before it re-sent, and without
    # a context block it passed that processor while 2.8-3.4 s of the cut text was spoken.
    ("resend_cut_text", "VIOLATION resend: made "),
    ("resend_no_context", "VIOLATION resend: made "),
    # Caught (item 8): a processor that dropped all uninterruptible frames was taken for a filter and passed.
    ("drop_all_uninterruptible", "VIOLATION filter: dropped all 5 uninterruptible frames it was given"),
], ids=["leaky_tts", "drop_uninterruptible", "noop_flush", "leaky_tts_no_context", "untraced_leaky_tts",
        "resend_cut_text", "resend_no_context", "drop_all_uninterruptible"])
def test_check_fails_naming_the_violator_of_each_broken_fixture(name, violation, capsys):
    assert main(["check", str(BROKEN / f"{name}.yaml")]) == 1
    err = capsys.readouterr().err
    assert (violation.search(err) if isinstance(violation, re.Pattern) else violation in err), err
    assert not [line for line in err.splitlines() if "VIOLATION" in line and line.split()[1] in
                ("normalize:", "tail:", "input:", "llm:", "user_context:", "assistant_context:")], err
    if name.startswith("resend"):
        assert "VIOLATION tts" not in err and "VIOLATION output" not in err, err


def test_check_excuses_a_filter_only_when_its_type_declares_it_consumes_uninterruptible_frames(write_config, capsys):
    text = (BROKEN / "drop_all_uninterruptible.yaml").read_text()
    path = write_config(text.replace("type: drop_all_uninterruptible", "type: consume_uninterruptible"))
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "note: filter consumes uninterruptible frames (its type declares it)" in out, out


def test_check_says_so_when_a_config_cannot_be_built_here(capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("LLM_BASE_URL", raising=False)
    assert main(["check", str(ROOT / "configs" / "openai.yaml")]) == NOT_CHECKED
    assert "NOT CHECKED, cannot build here: processors.llm" in capsys.readouterr().err


def test_check_passes_exit_zero_on_a_good_config(capsys):
    assert main(["check", str(ROOT / "configs" / "graph_tour.yaml")]) == 0
    assert "PASS" in capsys.readouterr().out


async def interruptions_after_the_swallower(*, guarded: bool) -> int:
    async with AgentHarness(load_agent(SWALLOW), interruptions=guarded) as h:
        tail = h.probe("tail", processed=True)
        await h.inject(TextFrame("hello"))
        await tail.wait_for(TextFrame)
        await h.processors["input"].broadcast_interruption()
        await asyncio.sleep(0.3)
        return len(tail.of_type(InterruptionFrame))


async def test_gap_a_swallowing_processor_hides_the_interruption_in_plain_pipecat():
    assert await interruptions_after_the_swallower(guarded=False) == 0
    assert await interruptions_after_the_swallower(guarded=True) == 1


async def test_check_respects_disabled_interruptions_and_still_checks_the_api_one():
    path = ROOT / "configs" / "assistant.yaml"
    agent = load_agent_text(path.read_text() + "interruptions: {enabled: false}\n", path)
    report = await run_check(agent)
    assert report.ok, report.violations
    assert [i.origin for i in report.interruptions] == ["api"]
    assert any("interruptions disabled" in note for note in report.notes), report.notes
