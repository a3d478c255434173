"""The local transport's configs validate without the `local` extra or a sound card."""

import pytest

from pipelines.errors import ConfigErrors
from pipelines.validate import load_agent_text

AGENT = """
version: 1
name: desk
transport: {{type: local, {params}}}
processors:
  bot: {{type: tone_reply}}
pipeline: [input, bot, output]
"""


def test_local_config_validates_offline():
    agent = load_agent_text(AGENT.format(params="input_device_index: 2, audio_out_sample_rate: 16000"))
    assert agent.transport.params.input_device_index == 2
    assert agent.transport.type.serve is None  # one worker, run until Ctrl-C


def test_bad_device_index_is_a_config_error():
    with pytest.raises(ConfigErrors, match="input_device_index"):
        load_agent_text(AGENT.format(params="input_device_index: -1"))
