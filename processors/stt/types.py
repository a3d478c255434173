"""The ``pocketsphinx`` STT type: its YAML params and factory.

Validating a config imports nothing heavy: pocketsphinx and pipecat's
services are imported by the factory, when an agent is built.
"""

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from pipelines.errors import ConfigError, ConfigErrors
from pipelines.registry import TypeInfo
from pipelines.spec import ConfigFile, Params


class PocketsphinxParams(Params):
    """Offline US English recognition with the model inside the pocketsphinx wheel."""

    phrases: list[str] | None = Field(
        None, min_length=1, description="closed domain: recognise exactly one of these phrases"
    )
    grammar: str | None = Field(None, description="closed domain: an inline JSGF grammar")
    grammar_file: ConfigFile | None = Field(None, description="closed domain: a JSGF file, relative to the config")
    interim_secs: float = Field(0.3, ge=0, le=10, description="seconds of speech between interim transcripts (0: none)")
    preroll_secs: float = Field(
        1.0, gt=0, le=3, description="audio kept before VAD's start, decoded from just before its first speech"
    )
    max_hmm_per_frame: int = Field(3000, ge=500, le=100_000, description="search width: lower is faster, higher more exact")
    accurate: bool = Field(False, description="second search passes: slightly fewer errors, ~10x slower final")
    out_of_domain_margin: float | None = Field(
        0.8, ge=0, le=10,
        description="closed domain only: reject speech whose open-vocabulary reading has more phones outside "
        "the phrase than this times the phrase's (transcribed as heard, so the LLM falls back); null: never reject",
    )
    out_of_domain_search: Literal["fast", "exact"] = Field(
        "fast",
        description="the out-of-domain pass's search: fast (half the CPU, same verdicts, a rough transcript "
        "of rejected speech) or exact (pocketsphinx's beams: the transcript an LLM behind the domain reads is better)",
    )
    ttfs_p99_latency: float = Field(
        0.5, gt=0, le=10, description="safety net for turn-taking: speech end to final transcript, p99 (s)"
    )

    @field_validator("phrases")
    @classmethod
    def _words_are_known(cls, phrases: list[str] | None) -> list[str] | None:
        """Checked when the config is validated: a word the dictionary lacks would never be heard."""
        from processors.stt.grammar import grammar_words, phrases_to_jsgf, unknown_words

        if phrases:
            unknown = unknown_words(grammar_words(phrases_to_jsgf(phrases)))
            if unknown:
                raise ValueError(f"words not in the pronunciation dictionary: {', '.join(unknown)}")
        return phrases

    @model_validator(mode="after")
    def _one_grammar_source(self):
        given = [k for k in ("phrases", "grammar", "grammar_file") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give only one of phrases, grammar and grammar_file (got {', '.join(given)})")
        return self


def _grammar(params: PocketsphinxParams, ctx) -> str | None:
    """The JSGF text the agent's decoder uses (checked here), or None for the language model."""
    from processors.stt.grammar import GrammarError, check_grammar, phrases_to_jsgf

    key = f"processors.{ctx.processor_id}"
    if params.phrases is not None:
        key, jsgf = f"{key}.phrases", phrases_to_jsgf(params.phrases)
    elif params.grammar is not None:
        key, jsgf = f"{key}.grammar", params.grammar
    elif params.grammar_file is not None:
        key, path = f"{key}.grammar_file", Path(ctx.config_dir) / params.grammar_file
        try:
            jsgf = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigErrors([ConfigError(None, key, f"cannot read {path}: {getattr(e, 'strerror', e)}")]) from None
    else:
        return None
    try:
        check_grammar(jsgf, key)
    except GrammarError as e:
        raise ConfigErrors([ConfigError(None, "", str(e))]) from None
    return jsgf


#: The params a running decoder can switch (``Search``): its host makes a search for each setting.
SEARCH_PARAMS = ("max_hmm_per_frame", "accurate", "out_of_domain_search")


def _searches(ctx) -> tuple:
    """The agent's own search, then its ``backpressure.degraded`` one if that differs.

    Read from the spec, not from the params being built (a session started
    at DEGRADED is built with the degraded ones): every session of the
    agent gets the same host, with both searches made before it forks.
    """
    from processors.stt.decoder_pool import Search

    declared = {k: v for k, v in ctx.spec.processors[ctx.processor_id].params.items() if k in SEARCH_PARAMS}
    degraded = {k: v for k, v in ctx.spec.backpressure.degraded.get(ctx.processor_id, {}).items() if k in SEARCH_PARAMS}
    own = Search.of(PocketsphinxParams.model_validate(declared))
    under_load = Search.of(PocketsphinxParams.model_validate({**declared, **degraded}))
    return (own,) if under_load == own else (own, under_load)


def _margin(params: PocketsphinxParams, grammar: str | None) -> float | None:
    """The out-of-domain margin in use: only beside a grammar."""
    return params.out_of_domain_margin if grammar is not None else None


def _host_config(grammar: str | None, margin: float | None, ctx):
    from processors.stt.decoder_pool import HostConfig

    return HostConfig(searches=_searches(ctx), language_model=grammar is None, domain_check=margin is not None)


def prewarm_pocketsphinx_stt(params: PocketsphinxParams, ctx) -> None:
    """Starts the shared decoder host (a forked process holding the acoustic model) before the first session."""
    from processors.stt.decoder_pool import decoder_host

    grammar = _grammar(params, ctx)
    decoder_host(_host_config(grammar, _margin(params, grammar), ctx))


def make_pocketsphinx_stt(params: PocketsphinxParams, ctx):
    """Builds the STT service; the shared decoder host starts loading now."""
    from processors.stt.decoder_pool import Search, decoder_host
    from processors.stt.pocketsphinx import PocketsphinxSTTService

    grammar = _grammar(params, ctx)
    margin = _margin(params, grammar)
    host_config = _host_config(grammar, margin, ctx)
    decoder_host(host_config)  # starts loading the model now, while the rest of the agent is built
    return PocketsphinxSTTService(
        host_config=host_config,
        grammar=grammar,
        phrases=params.phrases,
        preroll_secs=params.preroll_secs,
        interim_secs=params.interim_secs,
        out_of_domain_margin=margin,
        search=Search.of(params),
        ttfs_p99_latency=params.ttfs_p99_latency,
        name=ctx.processor_id,
    )


TYPES = [
    TypeInfo(
        "processor", "pocketsphinx_stt", PocketsphinxParams, make_pocketsphinx_stt,
        "offline speech-to-text (pocketsphinx, decoded in shared worker processes)",
        prewarm=prewarm_pocketsphinx_stt, aliases=("pocketsphinx",), live_params=(*SEARCH_PARAMS, "interim_secs"),
    ),
]
