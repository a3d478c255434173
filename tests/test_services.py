"""The service catalogue: pipecat's STT, TTS and LLM services as types, validated and built offline.

No provider is reached: keys are fake, nothing is started. A type whose
pip extra is not installed must fail validation with the one line naming it.
"""

import json
import typing

import pytest
from pipecat.processors.frame_processor import FrameProcessor

from pipelines.builder import build_agent
from pipelines.errors import ConfigErrors
from pipelines.validate import load_agent_text
from processors.services import generate
from processors.services.introspect import api_key_env
from processors.services.types import catalogue, missing_requirement, yaml_type

TYPES = catalogue()["types"]


def dummy(annotation):
    """A value of the required param's type (what a user would write)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return typing.get_args(annotation)[0]
    return {int: 1, float: 1.0, bool: False, dict: {}, list: []}.get(annotation, "test")


def agent_with(type_name: str, params: dict) -> str:
    block = json.dumps({"type": type_name, **params})
    return f"""
version: 1
name: catalogue
transport: {{type: synthetic}}
context: {{type: llm_context}}
processors:
  svc: {block}
pipeline: [input, user_context, svc, output, assistant_context]
"""


def required_params(type_name: str) -> dict:
    from pipelines.registry import default_registry

    model = default_registry().get("processor", type_name).params
    return {name: dummy(field.annotation) for name, field in model.model_fields.items() if field.is_required()}


def test_the_catalogue_and_its_docs_match_the_installed_pipecat():
    built = generate.build()
    assert json.loads(generate.CATALOGUE.read_text()) == built, "run: python -m processors.services.generate"
    assert generate.DOCS.read_text() == generate.docs(built)


def test_every_stt_tts_and_llm_module_is_covered_or_left_out_with_a_reason():
    modules = {module for _, _, module in generate.service_modules()}
    covered = {entry["module"] for entry in TYPES.values()}
    left_out = {key.split("(")[1].rstrip(")") for key in catalogue()["left_out"]}
    assert modules == covered | left_out
    assert all(reason for reason in catalogue()["left_out"].values())
    assert len(TYPES) >= 90


@pytest.mark.parametrize("type_name", sorted(TYPES))
async def test_every_type_validates_and_builds_with_a_fake_key(type_name, monkeypatch):
    entry = TYPES[type_name]
    if entry["api_key"]:
        monkeypatch.setenv(api_key_env(entry), "fake-key-for-tests")
    yaml = agent_with(type_name, required_params(type_name))
    problem = missing_requirement(entry)
    if problem:
        with pytest.raises(ConfigErrors) as e:
            load_agent_text(yaml)
        assert [str(err) for err in e.value.errors] == [f"<text>:7:8: processors.svc: {problem}"]
        assert f"pipecat-ai[{entry['extra']}]" in problem
        return
    built = build_agent(load_agent_text(yaml))
    service = built.processors["svc"]
    assert type(service).__name__ == entry["class"] and isinstance(service, FrameProcessor)
    assert service.name == "svc"
    await service.cleanup()  # closes what the factory opened (an HTTP session for some)


@pytest.mark.parametrize("type_name", ["openai_llm", "cartesia_tts", "deepgram_stt"])
def test_an_unset_key_is_one_line_naming_the_variable(type_name, monkeypatch):
    entry = TYPES[type_name]
    monkeypatch.delenv(api_key_env(entry), raising=False)
    yaml = agent_with(type_name, required_params(type_name))
    problem = missing_requirement(entry)
    if entry["api_key"] != "required":
        load_agent_text(yaml)  # an optional key may stay unset (a local server)
        return
    with pytest.raises(ConfigErrors) as e:
        load_agent_text(yaml)
    (error,) = e.value.errors
    assert str(error).endswith(problem or f"set {api_key_env(entry)} (or give api_key: ${{YOUR_VAR}})")


async def test_the_key_is_never_printed(monkeypatch):
    with pytest.raises(ConfigErrors) as e:
        load_agent_text(agent_with("cartesia_tts", {"api_key": "sk-very-secret", "url": 5}))
    assert "sk-very-secret" not in str(e.value)
    agent = load_agent_text(agent_with("cartesia_tts", {"api_key": "sk-given"}))
    params = agent.processors["svc"].params
    assert "sk-given" not in repr(params) and "sk-given" not in str(params.model_dump())
    built = build_agent(agent)
    assert built.processors["svc"]._api_key == "sk-given"  # the service itself gets it
    await built.processors["svc"].cleanup()


def test_settings_and_params_are_typed_from_the_source():
    assert yaml_type("str | None | NotGiven") is str
    assert yaml_type("Literal['a', 'b'] | None") == typing.Literal["a", "b"]
    assert yaml_type("dict[str, Any] | None") is dict
    assert yaml_type("aiohttp.ClientSession | None") is None
    with pytest.raises(ConfigErrors, match=r"processors.svc.settings.temperature: input should be a valid number"):
        load_agent_text(agent_with("groq_llm", {"api_key": "k", "settings": {"temperature": "hot"}}))
