"""Deterministic embeddings with known similarities, for the semantic tests (no model, no download).

`KNOWN` maps chosen texts to vectors built so that the cosine similarity between two of them is known in
advance (`near(axis, cos, other)` is at cosine `cos` from the unit vector of `axis`); any other text gets a
pseudo-random unit vector from a hash (nearly orthogonal to everything else in 64 dimensions). The same
table backs a plain function, a LangChain ``Embeddings`` and a LlamaIndex ``BaseEmbedding``.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np

DIM = 64


def axis(i: int) -> list[float]:
    v = [0.0] * DIM
    v[i] = 1.0
    return v


def near(base: int, cos: float, other: int) -> list[float]:
    """A unit vector at cosine `cos` from `axis(base)`, leaning towards `axis(other)`."""
    v = [0.0] * DIM
    v[base] = cos
    v[other] = math.sqrt(max(0.0, 1.0 - cos * cos))
    return v


REFUND = "How long is the refund window?"
REFUND_PARAPHRASE = "What is the refund period?"  # 0.95 from REFUND
REFUND_LOOSE = "How many days do I have to send an item back?"  # 0.87 from REFUND: near 0.9
REFUND_FAR = "Which items can be returned at all?"  # 0.80 from REFUND: below the band
REFUND_NEGATED = "Is there no refund window?"  # 0.97 from REFUND, but a negation
REFUND_OTHER_PRODUCT = "How long is the refund window for Zephyr?"  # 0.96 from REFUND, names a product
PRICE_30 = "Is the refund window 30 days?"
PRICE_60 = "Is the refund window 60 days?"  # 0.98 from PRICE_30, another number
UNRELATED = "Tell me a joke about cats"

KNOWN: dict[str, list[float]] = {
    REFUND: axis(0),
    REFUND_PARAPHRASE: near(0, 0.95, 1),
    REFUND_LOOSE: near(0, 0.87, 2),
    REFUND_FAR: near(0, 0.80, 3),
    REFUND_NEGATED: near(0, 0.97, 4),
    REFUND_OTHER_PRODUCT: near(0, 0.96, 5),
    PRICE_30: axis(6),
    PRICE_60: near(6, 0.98, 7),
    UNRELATED: axis(8),
}


def embed(text: str) -> list[float]:
    if text in KNOWN:
        return list(KNOWN[text])
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    v = np.random.default_rng(seed).standard_normal(DIM - 16)
    return [0.0] * 16 + list(v / np.linalg.norm(v))


class Counter:
    """An embed function that counts its calls and can be made to fail or to return bad vectors."""

    def __init__(self, behaviour: Any = None) -> None:
        self.calls = 0
        self.behaviour = behaviour

    def __call__(self, text: str) -> Any:
        self.calls += 1
        if self.behaviour is None:
            return embed(text)
        return self.behaviour(text)


def langchain_embeddings(fn: Any = embed) -> Any:
    from langchain_core.embeddings import Embeddings

    class KnownEmbeddings(Embeddings):
        def __init__(self) -> None:
            self.calls = 0

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [self.embed_query(t) for t in texts]

        def embed_query(self, text: str) -> list[float]:
            self.calls += 1
            return fn(text)  # type: ignore[no-any-return]

    return KnownEmbeddings()


def llamaindex_embedding() -> Any:
    from llama_index.core.embeddings import BaseEmbedding
    from pydantic import PrivateAttr

    class KnownEmbedding(BaseEmbedding):
        _calls: int = PrivateAttr(default=0)

        @classmethod
        def class_name(cls) -> str:
            return "KnownEmbedding"

        def _get_query_embedding(self, query: str) -> list[float]:
            self._calls += 1
            return embed(query)

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

        def _get_text_embedding(self, text: str) -> list[float]:
            return embed(text)

    return KnownEmbedding(model_name="known-64")
