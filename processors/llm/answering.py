"""ContextAnsweringLLMService: the frame handling shared by LLM services that answer the context themselves.

The scripted LLM and the local chat model are not clients of a pipecat
provider: each writes its own answer to an ``LLMContextFrame``. What they
share is here: settings with only a model name (and a temperature and token
limit where the model has them), and handing each context to ``_answer``
while every other frame passes on.
"""

from abc import abstractmethod

from pipecat.frames.frames import Frame, LLMContextFrame
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.llm_service import LLMService
from pipecat.services.settings import LLMSettings


class ContextAnsweringLLMService(LLMService):
    """An LLM service that answers each ``LLMContextFrame`` with its own :meth:`_answer`."""

    def __init__(self, *, model: str, temperature: float | None = None, max_tokens: int | None = None, **kwargs):
        """Creates the service with settings naming ``model`` (the rest unset); ``kwargs`` go to ``LLMService``."""
        settings = LLMSettings(
            model=model, system_instruction=None, temperature=temperature, max_tokens=max_tokens,
            top_p=None, top_k=None, frequency_penalty=None, presence_penalty=None, seed=None,
            filter_incomplete_user_turns=False, user_turn_completion_config=None,
        )
        super().__init__(settings=settings, **kwargs)

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        """Answers ``LLMContextFrame``; passes every other frame on."""
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMContextFrame):
            await self._answer(frame.context)
        else:
            await self.push_frame(frame, direction)

    @abstractmethod
    async def _answer(self, context: LLMContext) -> None:
        """Pushes the reply to ``context`` downstream."""
