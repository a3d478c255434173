"""What runtime settings a service takes: its pipecat settings class, checked by its YAML params where they overlap."""

import pytest
from pipecat.services.settings import LLMSettings

from pipelines.sessions.settings_gate import SettingsChange
from pipelines.sessions.settings_model import BadSettings, ServiceSettingsModel, SettingsModel
from processors.llm.types import OpenAIParams
from processors.tts.espeak import EspeakTTSService
from processors.tts.types import EspeakParams

LLM = ServiceSettingsModel("llm", "llm", LLMSettings, OpenAIParams, {"model": "gpt-4o-mini"})
TTS = ServiceSettingsModel("tts", "voice", EspeakTTSService.Settings, EspeakParams, {"voice": "en-us", "rate": 175})
MODEL = SettingsModel(llm=LLM, tts=TTS)


@pytest.mark.parametrize(("change", "field", "words"), [
    ({"llm": {"temperature": 3}}, "llm.temperature", "less than or equal to 2"),  # the YAML params' range
    ({"llm": {"seed": "x"}}, "llm.seed", "valid integer"),  # the settings class's own type
    ({"llm": {"user_turn_completion_config": {}}}, "llm.user_turn_completion_config", "allowed: "),  # no checkable type
    ({"tts": {"voice": "nobody"}}, "tts.voice", "unknown espeak voice"),
    ({"tts": {"extra": {"speed": 2}}}, "tts.extra", "allowed: language, model, pitch, rate, voice"),
    ({"colour": "red"}, "colour", r"a change takes llm \("),
])
def test_a_change_is_refused_naming_its_field(change, field, words):
    with pytest.raises(BadSettings, match=words) as refused:
        MODEL.check(SettingsChange(**change))
    assert refused.value.field == field and str(refused.value).startswith(field)


def test_good_changes_pass_and_an_agent_without_a_tts_refuses_tts_settings():
    MODEL.check(SettingsChange(llm={"temperature": 0.2, "model": "gpt-4o"}, tts={"rate": 300, "pitch": 10}))
    with pytest.raises(BadSettings, match="no TTS"):
        SettingsModel(llm=LLM).check(SettingsChange(tts={"rate": 200}))


def test_stored_settings_keep_what_still_passes_and_say_why_the_rest_went():
    kept, dropped = MODEL.usable({"tts": {"voice": "nobody", "rate": 200}, "llm": {"bogus": 1}, "system_prompt": "x"})
    assert kept == {"tts": {"rate": 200}}
    assert len(dropped) == 2 and dropped[0].startswith("llm.bogus") and dropped[1].startswith("tts.voice")
