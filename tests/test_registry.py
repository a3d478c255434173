"""The registry: built-ins, duplicates, entry points, and nothing imported from a config."""

import re
import sys

import pytest

from pipelines.errors import ConfigErrors
from pipelines.registry import Registry, TypeInfo, default_registry
from pipelines.spec import Params
from pipelines.validate import load_agent_text


class _P(Params):
    x: int = 1


def test_builtins_are_registered_with_params_models():
    registry = default_registry()
    assert {"passthrough", "logger", "filter"} <= set(registry.names("processor"))
    assert "synthetic" in registry.names("transport")
    assert "llm_context" in registry.names("context")
    for info in registry.all():
        assert issubclass(info.params, Params) and info.summary


def test_duplicate_and_bad_kind_are_refused():
    registry = Registry([TypeInfo("processor", "x", _P, lambda p, c: None, "x")])
    with pytest.raises(ValueError, match="registered twice"):
        registry.add(TypeInfo("processor", "x", _P, lambda p, c: None, "x"))
    with pytest.raises(ValueError, match="kind"):
        registry.add(TypeInfo("widget", "y", _P, lambda p, c: None, "y"))


def test_a_config_cannot_import_a_module_by_naming_it():
    before = set(sys.modules)
    with pytest.raises(ConfigErrors, match="unknown processor type 'os.system'"):
        load_agent_text("""version: 1
name: sneaky
transport: {type: synthetic}
processors:
  a: {type: os.system}
pipeline: [input, a, output]
""")
    assert not any(m.startswith("antigravity") for m in set(sys.modules) - before)


def test_third_party_types_come_from_entry_points(monkeypatch):
    import pipelines.registry as reg

    class FakeEntry:
        def load(self):
            return [TypeInfo("processor", "thirdparty", _P, lambda p, c: None, "from a plugin")]

    monkeypatch.setattr(reg, "entry_points", lambda group: [FakeEntry()] if group == reg.ENTRY_POINT_GROUP else [])
    registry = reg.load_registry()
    assert registry.get("processor", "thirdparty").summary == "from a plugin"
    assert registry.get("processor", "passthrough") is not None


#: Modules whose types are speech or language services: their names end in the service's kind.
SERVICE_MODULES = ("processors.stt", "processors.llm", "processors.tts", "processors.local", "processors.services")


def test_every_builtin_type_follows_the_naming_rules():
    """pipelines/registry.py's naming rules: type names, factory names, service kinds."""
    broken = []
    for info in default_registry().all():
        factory = getattr(info.factory, "__name__", "")
        expected = f"make_{info.name}_transport" if info.kind == "transport" else f"make_{info.name}"
        if not re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", info.name):
            broken.append(f"{info.kind} {info.name}: a type name is lower-case words joined by _")
        if factory != "<lambda>" and factory != expected:
            broken.append(f"{info.kind} {info.name}: its factory is {factory}, not {expected}")
        if info.factory.__module__.startswith(SERVICE_MODULES) and not re.search(r"_(stt|llm|tts)$", info.name):
            broken.append(f"{info.kind} {info.name}: a speech or language service is named <engine>_<stt|llm|tts>")
    assert not broken, "\n".join(broken)


def test_an_old_type_name_validates_with_a_note_naming_the_new_one():
    registry = Registry([TypeInfo("processor", "shout_tts", _P, lambda p, c: None, "x", aliases=("shout",))])
    registry.add(TypeInfo("transport", "synthetic", _P, lambda p, c: None, "x"))
    text = "version: 1\nname: a\ntransport: {type: synthetic}\nprocessors:\n  s: {type: shout}\npipeline: [input, s, output]\n"
    agent = load_agent_text(text, "old.yaml", registry=registry)
    assert agent.processors["s"].type.name == "shout_tts" and registry.names("processor") == ["shout_tts"]
    (note,) = agent.notes
    assert str(note).startswith("old.yaml:5:") and "'shout' is deprecated" in str(note) and "type: shout_tts" in str(note)
    with pytest.raises(ValueError, match="registered twice"):
        registry.add(TypeInfo("processor", "shout", _P, lambda p, c: None, "x"))


def test_the_old_builtin_names_still_validate():
    """Renamed built-ins (espeak, pocketsphinx, scripted, openai) keep working in old configs."""
    registry = default_registry()
    renamed = {"espeak": "espeak_tts", "pocketsphinx": "pocketsphinx_stt", "scripted": "scripted_llm",
               "openai": "openai_compatible_llm"}
    assert {old: registry.get("processor", old).name for old in renamed} == renamed
