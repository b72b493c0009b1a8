"""Offline stand-ins for the demo and notebook 2, built on LlamaIndex's own base classes.

- `SlowFakeLLM`: a `CustomLLM` that answers with the first line of the context in its prompt, after
  `latency` seconds, as a remote model would; it streams word by word. Replace it with your LLM.
- `KeywordEmbedding`: hashed bag-of-words vectors; texts that share words are close. Deterministic.

Example:
    >>> llm = SlowFakeLLM(latency=0)
    >>> llm.complete("---------------------\\nReturns within 30 days.\\n---------------------").text
    'According to our docs: Returns within 30 days.'
"""

from __future__ import annotations

import re
import time
from typing import Any

from fakes_langchain import keyword_vector
from llama_index.core.base.llms.types import CompletionResponseGen
from llama_index.core.embeddings import BaseEmbedding
from llama_index.core.llms import CompletionResponse, CustomLLM, LLMMetadata
from llama_index.core.llms.callbacks import llm_completion_callback

__all__ = ["KeywordEmbedding", "SlowFakeLLM"]


class SlowFakeLLM(CustomLLM):
    """Answers from the first line of its context, after `latency` seconds, like a remote model would."""

    latency: float = 0.8

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="slow-fake", context_window=4096, num_output=256)

    def _answer(self, prompt: str) -> str:
        time.sleep(self.latency)
        # LlamaIndex's QA prompts put the retrieved context between two dashed lines.
        context = prompt.split("---------------------\n", 1)[-1].split("\n---------------------", 1)[0]
        lines = [line for line in context.splitlines() if line.strip() and not re.match(r"^\w+: ", line)]
        return "According to our docs: " + (lines[0] if lines else "nothing relevant.")

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=self._answer(prompt))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        text = self._answer(prompt)

        def words() -> CompletionResponseGen:
            sofar = ""
            for word in text.split(" "):
                delta = word if not sofar else " " + word
                sofar += delta
                yield CompletionResponse(text=sofar, delta=delta)

        return words()


class KeywordEmbedding(BaseEmbedding):
    """Hashed bag of words: texts that share words are close. Deterministic and offline."""

    def _get_query_embedding(self, query: str) -> list[float]:
        return keyword_vector(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return keyword_vector(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return keyword_vector(text)
