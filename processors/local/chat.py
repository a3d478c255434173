"""LocalChatLLMService: a chat model from a directory on disk, through transformers on torch.

The model's own chat template turns the conversation into a prompt; tokens
stream out of ``generate`` (run in a worker thread) through transformers'
``TextIteratorStreamer`` and go downstream as they come, as a remote model's
would. An interruption stops the generation thread at its next token.
Function calling is not offered: small local chat models follow tool schemas
too unreliably to be worth advertising.
"""

import asyncio
import threading

from pipecat.frames.frames import LLMFullResponseEndFrame, LLMFullResponseStartFrame
from pipecat.processors.aggregators.llm_context import LLMContext

from processors.llm.answering import ContextAnsweringLLMService

#: Roles whose plain-text messages a chat template takes.
CHAT_ROLES = ("system", "user", "assistant")


def chat_messages(context: LLMContext) -> list[dict[str, str]]:
    """The context's system, user and assistant messages as plain text (tool traffic left out)."""
    messages = []
    for message in context.get_messages():
        if not isinstance(message, dict) or message.get("role") not in CHAT_ROLES:
            continue
        content = message.get("content")
        if isinstance(content, list):
            content = " ".join(part.get("text", "") for part in content if isinstance(part, dict))
        if isinstance(content, str) and content:
            messages.append({"role": message["role"], "content": content})
    return messages


class LocalChatLLMService(ContextAnsweringLLMService):
    """Answers the conversation with a local causal language model."""

    def __init__(self, *, model_path: str, max_new_tokens: int = 128, temperature: float = 0.0,
                 threads: int | None = None, **kwargs):
        """Loads the tokenizer and model.

        Args:
            model_path: A directory holding a causal LM and its tokenizer (with a chat template).
            max_new_tokens: The longest reply, in tokens.
            temperature: 0 for greedy (deterministic) decoding, else sampling at this temperature.
            threads: torch's intra-op threads; None keeps torch's default.
            **kwargs: LLMService arguments (``name``...).
        """
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        super().__init__(model=model_path, temperature=temperature, max_tokens=max_new_tokens, **kwargs)
        if threads:
            torch.set_num_threads(threads)
        self._tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
        self._model = AutoModelForCausalLM.from_pretrained(model_path, local_files_only=True).eval()
        self._max_new_tokens = max_new_tokens
        self._temperature = temperature

    def _generate(self, messages: list[dict[str, str]], streamer, stop: threading.Event) -> None:
        """Runs ``generate`` (blocking), feeding ``streamer``; ``stop`` ends it early."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        class Stopped(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return stop.is_set()

        inputs = self._tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        sampling = {"do_sample": True, "temperature": self._temperature} if self._temperature > 0 else {"do_sample": False}
        with torch.inference_mode():
            self._model.generate(
                **inputs, max_new_tokens=self._max_new_tokens, streamer=streamer,
                stopping_criteria=StoppingCriteriaList([Stopped()]),
                pad_token_id=self._tokenizer.pad_token_id or self._tokenizer.eos_token_id, **sampling,
            )

    async def _answer(self, context: LLMContext):
        from transformers import TextIteratorStreamer

        streamer = TextIteratorStreamer(self._tokenizer, skip_prompt=True, skip_special_tokens=True)
        stop = threading.Event()
        worker = asyncio.create_task(asyncio.to_thread(self._generate, chat_messages(context), streamer, stop))
        await self.push_frame(LLMFullResponseStartFrame())
        await self.start_ttfb_metrics()
        try:
            pieces = iter(streamer)
            while (piece := await asyncio.to_thread(next, pieces, None)) is not None:
                if piece:
                    await self.stop_ttfb_metrics()
                    await self._push_llm_text(piece)
            await worker
        finally:
            stop.set()  # interrupted (cancelled) or done: the generation thread ends at its next token
        await self.push_frame(LLMFullResponseEndFrame())
