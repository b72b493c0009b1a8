"""Offline stand-ins for the demo and notebook 1, built on LangChain's own base classes.

- `SlowFakeChatModel`: a chat model that answers with the first line of the context in its system message,
  after `latency` seconds, as a remote model would. Replace it with your model (``ChatOpenAI(...)``, ...).
- `KeywordEmbeddings`: hashed bag-of-words vectors; texts that share words are close. Deterministic.

Example:
    >>> model = SlowFakeChatModel(latency=0)
    >>> model.invoke([("system", "Context:\\nReturns: 30 days."), ("human", "Refunds?")]).content
    'According to our docs: Returns: 30 days.'
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from typing import Any

from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

__all__ = ["KeywordEmbeddings", "SlowFakeChatModel", "keyword_vector"]


def keyword_vector(text: str, size: int = 256) -> list[float]:
    """A unit vector of hashed word counts (words of four letters or more)."""
    vector = [0.0] * size
    for word in re.findall(r"[a-z]{4,}", text.lower()):
        vector[int(hashlib.md5(word.encode()).hexdigest(), 16) % size] += 1.0
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


class SlowFakeChatModel(BaseChatModel):
    """Answers from the first line of its context, after `latency` seconds, like a remote model would."""

    latency: float = 0.8

    @property
    def _llm_type(self) -> str:
        return "slow-fake-chat"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        time.sleep(self.latency)
        context = str(messages[0].content).split("Context:\n", 1)[-1]
        usage = {"input_tokens": 120, "output_tokens": 20, "total_tokens": 140}
        message = AIMessage("According to our docs: " + context.splitlines()[0], usage_metadata=usage)
        return ChatResult(generations=[ChatGeneration(message=message)])


class KeywordEmbeddings(Embeddings):
    """Hashed bag of words: texts that share words are close. Deterministic and offline."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [keyword_vector(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return keyword_vector(text)
