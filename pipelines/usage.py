"""Usage: what a session consumed, counted from pipecat's usage metrics, priced when the agent says how.

pipecat services report usage in ``MetricsFrame``s (with the worker's
``enable_usage_metrics``): LLM prompt/completion tokens
(``LLMUsageMetricsData``), TTS characters (``TTSUsageMetricsData``), STT
seconds of input audio (``STTUsageMetricsData``). ``UsageMeter`` is an
observer that counts each such frame once (its first push only), keyed
``kind/provider/model/metric`` where the provider is the processor's type in
the YAML (``openai``, ``espeak``, ``scripted``...). The server takes what it
counted at every turn's end and at the session's end and adds it to the
store (by session, by user and day) and to ``/metrics`` (by agent and
provider, never by user). Prices (``usage.prices`` in the YAML, per unit)
add a ``cost`` beside each count.
"""

from collections.abc import Mapping

from pipecat.frames.frames import MetricsFrame
from pipecat.metrics.metrics import LLMUsageMetricsData, STTUsageMetricsData, TTSUsageMetricsData
from pipecat.observers.base_observer import BaseObserver, FramePushed

#: The metrics counted, by kind.
METRICS = {"llm": ("prompt_tokens", "completion_tokens"), "tts": ("characters",), "stt": ("audio_s",)}
COST = "cost"


def usage_key(kind: str, provider: str, model: str | None, metric: str) -> str:
    """The key of one count: ``kind/provider/model/metric`` (a missing model is ``-``)."""
    return f"{kind}/{provider}/{model or '-'}/{metric}"


def split_key(key: str) -> tuple[str, str, str, str]:
    """``(kind, provider, model, metric)`` of a key; the model may itself hold slashes."""
    kind, provider, rest = key.split("/", 2)
    model, metric = rest.rsplit("/", 1)
    return kind, provider, model, metric


def priced(counts: Mapping[str, float], prices: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """``counts`` with a ``cost`` key beside each provider/model that has a price."""
    out = dict(counts)
    for key, value in counts.items():
        kind, provider, model, metric = split_key(key)
        price = (prices.get(f"{provider}/{model}") or prices.get(provider) or {}).get(metric)
        if price:
            cost = usage_key(kind, provider, model, COST)
            out[cost] = out.get(cost, 0.0) + value * price
    return out


def totals(counts: Mapping[str, float]) -> dict[str, float]:
    """Sums by metric over every provider: ``{"prompt_tokens": ..., "tokens": ..., "cost": ...}``."""
    out: dict[str, float] = {}
    for key, value in counts.items():
        metric = split_key(key)[3]
        out[metric] = out.get(metric, 0.0) + value
    out["tokens"] = out.get("prompt_tokens", 0.0) + out.get("completion_tokens", 0.0)
    return out


class UsageMeter(BaseObserver):
    """Counts the usage pipecat reports in a session's worker, each frame once; ``take()`` hands it over."""

    def __init__(self, providers: Mapping[str, str], prices: Mapping[str, Mapping[str, float]] | None = None):
        """Creates the meter.

        Args:
            providers: The YAML type of each processor, by its pipecat name (what metrics name it by);
                the provider is that type without its kind (``openai_llm`` -> ``openai``, ``espeak_tts`` -> ``espeak``).
            prices: ``usage.prices`` of the agent.
        """
        super().__init__(observe_every_push=False)
        self._providers = dict(providers)
        self._prices = dict(prices or {})
        self._pending: dict[str, float] = {}
        #: Everything counted in this connection (budgets of one session read it).
        self.counted: dict[str, float] = {}

    def _add(self, kind: str, processor: str, model: str | None, metric: str, value: float) -> None:
        if value <= 0:
            return
        provider = self._providers.get(processor, processor.split("#")[0]).removesuffix(f"_{kind}")
        key = usage_key(kind, provider, model, metric)
        counts = priced({key: float(value)}, self._prices)
        for k, v in counts.items():
            self._pending[k] = self._pending.get(k, 0.0) + v
            self.counted[k] = self.counted.get(k, 0.0) + v

    async def on_push_frame(self, data: FramePushed):
        """Counts the usage in a ``MetricsFrame``'s first push."""
        if not isinstance(data.frame, MetricsFrame):
            return
        for item in data.frame.data:
            if isinstance(item, LLMUsageMetricsData):
                self._add("llm", item.processor, item.model, "prompt_tokens", item.value.prompt_tokens)
                self._add("llm", item.processor, item.model, "completion_tokens", item.value.completion_tokens)
            elif isinstance(item, TTSUsageMetricsData):
                self._add("tts", item.processor, item.model, "characters", item.value)
            elif isinstance(item, STTUsageMetricsData):
                self._add("stt", item.processor, item.model, "audio_s", item.value.audio_seconds)

    def take(self) -> dict[str, float]:
        """What was counted since the last ``take`` (and forgets it: it is counted once)."""
        pending, self._pending = self._pending, {}
        return pending
