"""Shared pieces of the LlamaIndex adapter tests: small deterministic models built on LlamaIndex's own bases.

`KeywordEmbedding` maps text to counts of a fixed vocabulary, so a query retrieves the documents that share
its words. `CountingLLM` is a `CustomLLM` that answers from its prompt and counts how often it was really
called (a cache hit does not call it). The fixtures set ``Settings`` and restore them after each test.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from llama_index.core import Document, Settings, StorageContext, VectorStoreIndex
from llama_index.core.base.llms.types import (
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.embeddings import BaseEmbedding
from llama_index.core.llms import CustomLLM
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.schema import BaseNode
from llama_index.core.storage.docstore import SimpleDocumentStore
from llama_index.core.vector_stores import SimpleVectorStore
from llama_index.core.vector_stores.types import VectorStoreQuery, VectorStoreQueryResult
from pydantic import PrivateAttr

from llamaindex_valkey_cache import InvalidatingDocstore, InvalidatingPydanticVectorStore, LlamaIndexCache

VOCAB = ("billing", "refund", "password", "login", "shipping", "parcel", "warranty", "repair", "weather")


class KeywordEmbedding(BaseEmbedding):
    """Counts of `VOCAB` words (plus a small constant so no vector is zero): deterministic and telling."""

    _calls: int = PrivateAttr(default=0)

    @classmethod
    def class_name(cls) -> str:
        return "KeywordEmbedding"

    @property
    def calls(self) -> int:
        return self._calls

    def _vector(self, text: str) -> list[float]:
        self._calls += 1
        words = re.findall(r"[a-z]+", text.lower())
        return [float(words.count(v)) + 0.01 for v in VOCAB]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._vector(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._vector(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._vector(text)


class CountingLLM(CustomLLM):
    """Answers ``answer <n> (<last words of the prompt>)`` and streams it word by word; counts real calls."""

    model: str = "counting-1"
    _calls: int = PrivateAttr(default=0)
    _serial: Any = PrivateAttr(default_factory=lambda: itertools.count(1))

    @classmethod
    def class_name(cls) -> str:
        return "CountingLLM"

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=self.model, num_output=64, context_window=4096)

    @property
    def calls(self) -> int:
        return self._calls

    def _answer(self, prompt: str) -> str:
        self._calls += 1
        tail = " ".join(prompt.split()[-6:])
        return f"answer {next(self._serial)} ({tail})"

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=self._answer(prompt), raw={"provider": object()})

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        text = self._answer(prompt)

        def gen() -> CompletionResponseGen:
            sofar = ""
            for word in text.split(" "):
                delta = word if not sofar else " " + word
                sofar += delta
                yield CompletionResponse(text=sofar, delta=delta)

        return gen()


class TextVectorStore(SimpleVectorStore):
    """LlamaIndex's in-memory SimpleVectorStore keeping the nodes too (``stores_text``), like most stores."""

    stores_text: bool = True
    _nodes: dict[str, BaseNode] = PrivateAttr(default_factory=dict)

    @classmethod
    def class_name(cls) -> str:
        return "TextVectorStore"

    def add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        self._nodes.update({n.node_id: n for n in nodes})
        return super().add(nodes, **kwargs)

    def delete(self, ref_doc_id: str, **kwargs: Any) -> None:
        super().delete(ref_doc_id, **kwargs)
        self._nodes = {i: n for i, n in self._nodes.items() if i in self.data.embedding_dict}

    def delete_nodes(self, node_ids: list[str] | None = None, filters: Any = None, **kwargs: Any) -> None:
        super().delete_nodes(node_ids, filters, **kwargs)
        self._nodes = {i: n for i, n in self._nodes.items() if i in self.data.embedding_dict}

    def get_nodes(self, node_ids: list[str] | None = None, filters: Any = None) -> list[BaseNode]:
        return [n for i, n in self._nodes.items() if node_ids is None or i in node_ids]

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        # The index keeps no node list for a store that holds text: search every node, as such stores do.
        result = super().query(dataclasses.replace(query, node_ids=None), **kwargs)
        result.nodes = [self._nodes[i] for i in result.ids or []]
        return result


DOCS = {
    "billing.md": "Billing happens monthly. A refund takes five days for billing disputes.",
    "password.md": "To reset a password use the login page and the password reset link.",
    "shipping.md": "Shipping a parcel takes two days; parcel tracking is on the shipping page.",
    "warranty.md": "The warranty covers repair for two years; repair requests go to support.",
}
CONTENT_TYPES = {"billing.md": "static", "password.md": "documentation", "shipping.md": "realtime"}


def documents(**changes: str) -> list[Document]:
    """The test corpus, one Document per file, with the texts in `changes` replaced (keys use '_' for '.')."""
    texts = {**DOCS, **{k.replace("_", "."): v for k, v in changes.items()}}
    return [
        Document(
            text=text,
            id_=doc_id,
            metadata={
                "file": doc_id,
                **({"content_type": CONTENT_TYPES[doc_id]} if doc_id in CONTENT_TYPES else {}),
            },
        )
        for doc_id, text in texts.items()
    ]


@contextmanager
def scoped_settings() -> Iterator[tuple[KeywordEmbedding, CountingLLM]]:
    """Settings.embed_model and an inner LLM for one test; Settings restored afterwards."""
    saved_llm, saved_embed = Settings._llm, Settings._embed_model
    embed, llm = KeywordEmbedding(), CountingLLM()
    Settings.embed_model = embed
    Settings.llm = llm
    try:
        yield embed, llm
    finally:
        Settings._llm, Settings._embed_model = saved_llm, saved_embed


def build_index(cache: LlamaIndexCache, docs: list[Document] | None = None) -> VectorStoreIndex:
    """A VectorStoreIndex over `docs` whose stores invalidate `cache` when documents change."""
    storage = StorageContext.from_defaults(
        docstore=InvalidatingDocstore(SimpleDocumentStore(), cache),
        vector_store=InvalidatingPydanticVectorStore(SimpleVectorStore(), cache),
    )
    return VectorStoreIndex.from_documents(docs if docs is not None else documents(), storage_context=storage)
