"""Local models by path: tiny random Whisper and chat models, built here, run in an agent on the file transport.

The models have the real architectures (WhisperForConditionalGeneration,
LlamaForCausalLM) with a few thousand random weights, saved with
``save_pretrained`` into a temporary folder: the agent goes through the same
loading (``local_files_only``) and inference code a downloaded model would.
Their generation configs keep the output to letters and vocabulary words, so
random weights still say something.
"""

import asyncio
import json
import string
import wave
from pathlib import Path

import pytest
from pipecat.workers.runner import WorkerRunner

from pipelines.builder import build_agent
from pipelines.errors import ConfigErrors
from pipelines.validate import load_agent_text
from processors.tts.espeak import synthesize_pcm

WORDS = "hello hi how are you i am fine thanks the weather is sunny today what time it tell me a joke".split()


def save_tiny_whisper(folder: Path) -> None:
    """A 1-layer Whisper with a byte-level tokenizer whose output is limited to lower-case letters."""
    import torch
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )

    torch.manual_seed(0)
    folder.mkdir()
    vocab = {c: i for i, c in enumerate(sorted(ByteLevel.alphabet()))}
    specials = ["<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>"]
    for token in specials:
        vocab[token] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = WhisperTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), unk_token=specials[0],
                                 bos_token=specials[0], eos_token=specials[0], pad_token=specials[0])
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer).save_pretrained(folder)
    end, start = vocab["<|endoftext|>"], vocab["<|startoftranscript|>"]
    config = WhisperConfig(
        vocab_size=len(vocab), num_mel_bins=80, d_model=32, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_source_positions=1500, max_target_positions=64, decoder_start_token_id=start,
        eos_token_id=end, pad_token_id=end, bos_token_id=end, begin_suppress_tokens=None, suppress_tokens=None,
    )
    model = WhisperForConditionalGeneration(config)
    letters = {vocab[c] for c in string.ascii_lowercase}
    model.generation_config = GenerationConfig(
        decoder_start_token_id=start, eos_token_id=end, pad_token_id=end, min_new_tokens=3,
        suppress_tokens=[i for i in range(len(vocab)) if i not in letters | {end}],
    )
    model.save_pretrained(folder)


def save_tiny_chat(folder: Path) -> None:
    """A 1-layer Llama with a word-level tokenizer and a chat template."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(0)
    specials = ["<unk>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"]
    vocab = {token: i for i, token in enumerate(specials + WORDS)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="</s>", additional_special_tokens=specials[3:])
    fast.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} {% endfor %}"
                          "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    fast.save_pretrained(folder)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                         bos_token_id=1, eos_token_id=2, pad_token_id=2)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=2, min_new_tokens=2,
                                               suppress_tokens=list(range(len(specials))))
    model.save_pretrained(folder)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    save_tiny_whisper(folder / "whisper")
    save_tiny_chat(folder / "chat")
    return folder


AGENT = """
version: 1
name: local_models
transport: {{type: file, input: in.wav, output: out.wav, transcript: out.jsonl,
             audio_in_sample_rate: 16000, audio_out_sample_rate: 24000}}
context: {{type: llm_context, system_prompt: "be brief", turn: {{stop: speech_timeout, speech_timeout: 0.3}}}}
processors:
  stt: {{type: local_whisper_stt, model_path: {whisper}, max_new_tokens: 6}}
  llm: {{type: local_chat_llm, model_path: {chat}, max_new_tokens: 5}}
  tts: {{type: espeak}}
pipeline: [input, stt, user_context, llm, tts, output, assistant_context]
"""


async def test_tiny_whisper_and_chat_models_answer_a_question_on_the_file_transport(models, tmp_path):
    speech = await synthesize_pcm("What is the weather like today?", sample_rate=16000)
    with wave.open(str(tmp_path / "in.wav"), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(bytes(16000) + speech + bytes(3 * 32000))
    config = tmp_path / "agent.yaml"
    config.write_text(AGENT.format(whisper=models / "whisper", chat=models / "chat"))
    from pipelines.validate import load_agent

    runner = WorkerRunner(handle_sigint=False, force_gc=True)
    await runner.add_workers(build_agent(load_agent(config)).worker())
    await asyncio.wait_for(runner.run(), 60)
    turns = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    user, answer = turns
    # Whisper heard the speech (random weights: letters), the chat model answered in its words, espeak spoke it.
    assert user["role"] == "user" and user["text"] and set(user["text"]) <= set(string.ascii_lowercase + " ")
    assert answer["role"] == "assistant" and answer["text"].split() and set(answer["text"].split()) <= set(WORDS)
    assert user["end"] <= answer["start"]
    with wave.open(str(tmp_path / "out.wav")) as wav:
        bot = wav.readframes(wav.getnframes())
    assert any(bot[i:i + 2] != b"\0\0" for i in range(int(answer["start"] * 48000) // 2 * 2, len(bot), 2))


def test_a_folder_without_a_model_is_a_config_error_naming_the_key(tmp_path):
    text = AGENT.format(whisper=tmp_path, chat=tmp_path)
    text = text[:text.index("transport:")] + "transport: {type: synthetic}\n" + text[text.index("context:"):]
    with pytest.raises(ConfigErrors, match=r"processors.stt.model_path: .* is not a model directory \(no config.json\)"):
        build_agent(load_agent_text(text, tmp_path / "agent.yaml"))
