"""The registry: built-ins, duplicates, entry points, and nothing imported from a config."""

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
