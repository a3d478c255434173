"""Every param is checked for its real range when a config is validated, not when it runs."""

import typing

import pytest
from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel

from pipelines.cli import main
from pipelines.errors import ConfigErrors
from pipelines.registry import default_registry
from pipelines.spec import InterruptionSettings
from pipelines.validate import load_agent

SYNTHETIC = """version: 1
name: ranges
transport: {{type: synthetic, audio_in_sample_rate: {rate}}}
pipeline: [input, output]
"""


def models(model: type[BaseModel], seen: set):
    """``model`` and every params model nested in its fields."""
    if model in seen:
        return
    seen.add(model)
    yield model
    for field in model.model_fields.values():
        for arg in _flatten(field.annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                yield from models(arg, seen)


def _flatten(annotation):
    yield annotation
    for arg in typing.get_args(annotation):
        yield from _flatten(arg)


def numeric_fields():
    seen: set = set()
    roots = [info.params for info in default_registry().all()] + [InterruptionSettings]
    for root in roots:
        for model in models(root, seen):
            for name, field in model.model_fields.items():
                kinds = {a for a in _flatten(field.annotation) if a in (int, float)}
                literal = typing.get_origin(field.annotation) is typing.Literal
                if kinds and not literal:
                    yield f"{model.__name__}.{name}", field


FIELDS = list(numeric_fields())


def test_the_walk_finds_the_numeric_params():
    names = {name for name, _ in FIELDS}
    assert {"PassThroughParams.delay_ms", "VADSettings.start_secs", "FileParams.speed", "WebRTCParams.port"} <= names


@pytest.mark.parametrize(("name", "field"), FIELDS, ids=[name for name, _ in FIELDS])
def test_every_numeric_param_has_a_lower_and_an_upper_bound(name, field):
    bounds = {type(m) for m in field.metadata}
    assert bounds & {Ge, Gt}, f"{name} has no lower bound"
    assert bounds & {Le, Lt}, f"{name} has no upper bound"


def test_an_unsupported_sample_rate_is_a_validation_error(write_config):
    path = write_config(SYNTHETIC.format(rate=7))
    with pytest.raises(ConfigErrors) as e:
        load_agent(path)
    (line,) = [str(err) for err in e.value.errors]
    assert line.startswith(f"{path}:3:52: transport.audio_in_sample_rate: input should be 8000, 12000, 16000")
    assert load_agent(write_config(SYNTHETIC.format(rate=16000)))


def test_a_missing_certificate_is_named_at_validation(write_config, tmp_path):
    (tmp_path / "key.pem").write_text("not checked here")
    path = write_config("""version: 1
name: tls
transport: {type: websocket, port: 0, ssl_certfile: certs/cert.pem, ssl_keyfile: key.pem}
pipeline: [input, output]
""")
    with pytest.raises(ConfigErrors) as e:
        load_agent(path)
    assert [str(err) for err in e.value.errors] == [
        f"{path}:3:53: transport.ssl_certfile: cannot read {tmp_path / 'certs' / 'cert.pem'}: no such file"]


OPENAI = """version: 1
name: secret
transport: {type: synthetic}
processors:
  llm:
    type: openai
    model: gpt-4o-mini
    api_key_env: ${VALUE_VAR}
pipeline: [input, llm, output]
"""


@pytest.mark.parametrize("secret", ["sk-proj-abcdef0123456789", "sk_live_abcdef0123456789"])
@pytest.mark.parametrize("command", ["validate", "run", "check"])
def test_a_key_where_a_variable_name_belongs_is_never_printed(write_config, monkeypatch, capsys, command, secret):
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    path = write_config(OPENAI.replace("VALUE_VAR", "OPENAI_API_KEY"))
    assert main([command, str(path)]) == 1
    out, err = capsys.readouterr()
    assert secret not in out + err
    assert (f"{path}:8:18: processors.llm.api_key_env: must be the name of an environment variable, not its value "
            "(write api_key_env: OPENAI_API_KEY; its value is not shown)"
            ) in err


def test_an_environment_value_in_any_error_is_redacted(write_config, monkeypatch):
    monkeypatch.setenv("FG_VOICE", "secret-voice-\x1b[2J")
    path = write_config("""version: 1
name: voice
transport: {type: synthetic}
processors:
  tts:
    type: espeak
    voice: x${FG_VOICE}
pipeline: [input, tts, output]
""")
    with pytest.raises(ConfigErrors) as e:
        load_agent(path)
    text = str(e.value)
    assert "secret-voice" not in text and "\x1b" not in text
    assert "${FG_VOICE}" in text and "a value from the environment (FG_VOICE) is not shown" in text


def test_a_block_error_quoting_an_environment_value_inside_it_is_redacted(write_config, monkeypatch):
    monkeypatch.setenv("FG_TOPIC", "token-5ecret")
    path = write_config("""version: 1
name: persona
transport: {type: synthetic}
context:
  system_prompt: "Talk about {${FG_TOPIC}}."
  variables: {topic: x}
pipeline: [input, user_context, output, assistant_context]
""")
    with pytest.raises(ConfigErrors) as e:
        load_agent(path)
    text = str(e.value)
    assert "5ecret" not in text
    assert "'{${FG_TOPIC}}' must be a plain variable name" in text and "(FG_TOPIC) is not shown" in text
