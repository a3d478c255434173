"""Hostile configs: every one ends in file:line:column errors, quickly, within bounded memory."""

import os
import re
import time

import pytest

from pipelines.cli import main
from pipelines.errors import ConfigErrors
from pipelines.loader import LIMITS, load_file, load_text
from pipelines.validate import MAX_ERRORS, load_agent, load_agent_text

LINE = re.compile(r"^.+:\d+:\d+: ")
AGENT = """version: 1
name: ok
transport: {type: synthetic}
pipeline: [input, output]
"""


def errors_of(load, *args) -> list[str]:
    """Loads, expecting ConfigErrors; every error is one line with file:line:column."""
    with pytest.raises(ConfigErrors) as e:
        load(*args)
    lines = [str(err) for err in e.value.errors]
    for line in lines:
        assert LINE.match(line) and "\n" not in line, line
    return lines


def billion_laughs(levels: int = 9) -> str:
    """The classic alias bomb: 10**levels strings from a few hundred bytes."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        prev, name = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{name}: &{name} [{','.join(['*' + prev] * 10)}]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_stops_at_the_line_that_crosses_the_limit():
    text = billion_laughs()
    assert len(text) < 600
    start = time.perf_counter()
    lines = errors_of(load_text, text, "bomb.yaml")
    assert time.perf_counter() - start < 5
    # the first line whose expansion exceeds the limit: level e holds 10**5 strings
    assert lines == [f"bomb.yaml:5:8: expands to more than {LIMITS.max_values} values"]


def test_include_bomb_is_bounded(tmp_path):
    for i in range(26):
        (tmp_path / f"f{i}.yaml").write_text(f"[!include f{i + 1}.yaml, !include f{i + 1}.yaml]\n" if i < 25 else "[x]\n")
    start = time.perf_counter()
    lines = errors_of(load_file, tmp_path / "f0.yaml")
    assert time.perf_counter() - start < 5
    assert lines == [f"{tmp_path / 'f0.yaml'}:1:2: more than {LIMITS.max_includes} includes"]


def test_alias_count_is_bounded():
    text = "a: &a x\nb: [" + ", ".join(["*a"] * (LIMITS.max_aliases + 1)) + "]\n"
    (line,) = errors_of(load_text, text, "many.yaml")
    assert line.startswith("many.yaml:2:") and f"more than {LIMITS.max_aliases} aliases" in line


def test_recursive_alias_is_refused():
    (line,) = errors_of(load_text, "a: &a [1, *a]\n", "loop.yaml")
    assert line == "loop.yaml:1:11: alias *a contains itself"


def test_deep_nesting_is_refused_not_a_recursion_error():
    lines = errors_of(load_text, "a: " + "[" * 900 + "]" * 900 + "\n", "deep.yaml")
    assert lines == [f"deep.yaml:1:{LIMITS.max_depth + 3}: nested deeper than {LIMITS.max_depth} levels"]


def test_control_characters_are_reported_escaped():
    (line,) = errors_of(load_text, "name: a\x1b[31mred\n", "ctl.yaml")
    assert line == "ctl.yaml:1:8: character U+001B is not allowed in YAML"


def test_merge_and_tagged_keys():
    lines = errors_of(load_text, "a: &x {b: 1}\nc:\n  <<: *x\n!foo d: 2\n", "keys.yaml")
    assert lines[0] == "keys.yaml:3:3: c: merge keys (<<) are not supported (write the keys out, or use !include)"
    assert lines[1].startswith("keys.yaml:4:1: ") and "!foo" in lines[1]


def test_unsupported_collection_tag():
    (line,) = errors_of(load_text, "a: !!set {x, y}\n", "tag.yaml")
    assert line.startswith("tag.yaml:1:4: a: tag ") and "set" in line


def test_bad_include_names_and_contents(tmp_path):
    (tmp_path / "latin1.yaml").write_bytes(b"x: caf\xe9\n")
    (tmp_path / "empty.yaml").write_text("# nothing\n")
    (tmp_path / "agent.yaml").write_text(
        'a: !include "nul\\0name.yaml"\nb: !include latin1.yaml\nc: !include empty.yaml\nd: !include .\n'
    )
    lines = errors_of(load_file, tmp_path / "agent.yaml")
    assert lines[0].startswith(f"{tmp_path / 'agent.yaml'}:1:4: a: !include nul\\x00name.yaml: not a usable file name")
    assert lines[1] == f"{tmp_path / 'latin1.yaml'}:1:7: b: !include latin1.yaml: not UTF-8 text (byte 0xe9)"
    assert lines[2] == f"{tmp_path / 'agent.yaml'}:3:4: c: !include empty.yaml: the file is empty"
    assert lines[3] == f"{tmp_path / 'agent.yaml'}:4:4: d: !include .: not a regular file"


def test_special_files_are_refused_without_reading_or_waiting(tmp_path):
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    (tmp_path / "agent.yaml").write_text("a: !include fifo.yaml\nb: !include zero.yaml\n")
    start = time.perf_counter()
    assert errors_of(load_file, "/dev/zero") == ["/dev/zero:1:1: cannot read config: not a regular file"]
    assert errors_of(load_file, fifo) == [f"{fifo}:1:1: cannot read config: not a regular file"]
    lines = errors_of(load_file, tmp_path / "agent.yaml")
    assert lines[0].split(": ", 1)[1] == "a: !include fifo.yaml: not a regular file"
    assert lines[1].split(": ", 1)[1].startswith("b: !include zero.yaml leaves the config's folder")
    assert time.perf_counter() - start < 5


def test_oversized_file_is_refused(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("a: '" + "x" * LIMITS.max_bytes + "'\n")
    (line,) = errors_of(load_file, big)
    assert line.startswith(f"{big}:1:1: cannot read config: larger than")


def test_empty_file_names_the_file(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert errors_of(load_file, empty) == [f"{empty}:1:1: the file is empty"]


def test_validate_reports_every_file_after_a_bad_one(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(billion_laughs())
    good = tmp_path / "good.yaml"
    good.write_text(AGENT)
    assert main(["validate", "/dev/zero", str(bad), str(good)]) == 1
    out, err = capsys.readouterr()
    assert f"{good}: ok" in out
    assert "/dev/zero:1:1: cannot read config" in err and f"{bad}:5:8: expands to more than" in err


def test_escape_sequences_in_keys_and_values_never_reach_the_terminal(tmp_path, capsys):
    path = tmp_path / "esc.yaml"
    path.write_text(AGENT.replace("name: ok", 'name: "ok\\e[2J"\n"\\e]0;pwned\\a": 1\nprocessors:\n  "p\\u202e": {type: passthrough}'))
    assert main(["validate", str(path)]) == 1
    out, err = capsys.readouterr()
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]", out + err), err
    lines = err.splitlines()
    assert f"{path}:2:7: name: 'ok\\x1b[2J' holds control characters; names are printed to terminals and logs" in lines
    assert f"{path}:3:1: \\x1b]0;pwned\\x07: unknown key" in lines
    assert any(line.startswith(f"{path}:5:3: processors.p\\u202e: ") for line in lines), lines


def test_a_config_with_thousands_of_problems_reports_a_hundred_quickly(tmp_path, monkeypatch):
    monkeypatch.setenv("FG_ANY", "v")
    path = tmp_path / "noisy.yaml"
    path.write_text(AGENT + "processors:\n" + "".join(f"  p{i}: {{type: passthrough, bogus: '${{FG_ANY}}'}}\n" for i in range(3000)))
    start = time.perf_counter()
    lines = errors_of(load_agent, path)
    assert time.perf_counter() - start < 10
    assert len(lines) == MAX_ERRORS + 1
    assert lines[-1].startswith(f"{path}:1:1: ") and lines[-1].endswith("more problems not shown (fix these first)")


def test_a_params_validator_that_crashes_is_one_line_and_validation_goes_on(tmp_path):
    from pydantic import field_validator

    from pipelines.registry import Registry, TypeInfo
    from pipelines.spec import Params
    from pipelines.validate import load_agent_text

    class Fragile(Params):
        x: int = 0

        @field_validator("x")
        @classmethod
        def _crash(cls, value):
            raise KeyError("plugin bug")

    registry = Registry([TypeInfo("transport", "fragile", Fragile, lambda p, c: None, "crashes when checked")])
    with pytest.raises(ConfigErrors) as e:
        load_agent_text("version: 1\nname: f\ntransport: {type: fragile, x: 1}\npipeline: [input, outptu]\n", "f.yaml", registry)
    assert [str(err) for err in e.value.errors] == [
        "f.yaml:3:12: transport: the transport type 'fragile' failed checking these params (KeyError: 'plugin bug')",
        "f.yaml:4:19: pipeline.1: 'outptu' is not a declared processor (did you mean 'output'?)",
        "f.yaml:4:11: pipeline: the pipeline must end at 'output' (the transport's output); context aggregators may come after it",
    ]


def test_null_binary_and_date_keys_are_reported_at_the_key():
    text = AGENT.replace("pipeline:", "~: 1\n!!binary aGk=: 2\n2024-01-02: 3\npipeline:")
    lines = errors_of(load_text, text, "keys.yaml")
    assert "keys.yaml:4:1: keys must be plain names, not null (~)" in lines[0], lines
    assert "keys.yaml:5:1: keys must be plain names, not binary data (!!binary)" in lines[1], lines
    assert "keys.yaml:6:1: keys must be plain names, not a date" in lines[2], lines


@pytest.mark.parametrize("value", ["e", "kno", "oic", "ak"])
def test_a_short_environment_value_is_hidden_where_it_was_inserted_not_searched_for(monkeypatch, value):
    """Replacing "kno" in the message by ${FG_V} printed "un${FG_V}wn espeak voice '${FG_V}' (did you mean 'ko'?)";
    the message now names ${FG_V} where the value went, and no suggestion made from the value."""
    monkeypatch.setenv("FG_V", value)
    text = AGENT.replace("pipeline: [input, output]", "processors:\n  tts: {type: espeak, voice: '${FG_V}'}\n"
                         "pipeline: [input, tts, output]")
    (line,) = errors_of(load_agent_text, text, "short.yaml")
    assert line == ("short.yaml:5:30: processors.tts.voice: unknown espeak voice '${FG_V}' "
                    "(a value from the environment (FG_V) is not shown)"), line


def test_an_environment_value_without_a_twin_error_is_not_printed_at_all(monkeypatch):
    """With its stand-in the error changes (a plain word is a valid placeholder name): no message shows the value."""
    monkeypatch.setenv("FG_TOPIC", "a-b")
    text = AGENT.replace("pipeline: [input, output]", 'context:\n  system_prompt: "Talk about {${FG_TOPIC}}."\n'
                         "  variables: {topic: x}\npipeline: [input, user_context, output, assistant_context]")
    (line,) = errors_of(load_agent_text, text, "topic.yaml")
    assert "a-b" not in line and "this value is not valid" in line and "(FG_TOPIC) is not shown" in line, line
