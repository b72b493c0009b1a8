"""CachedQueryEngine: whole answers, their source nodes, streaming engines, invalidation and races."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from llama_index.core import PromptTemplate, Settings, VectorStoreIndex
from llama_index.core.base.response.schema import AsyncStreamingResponse, Response, StreamingResponse
from llama_index.core.query_engine import CustomQueryEngine
from llama_index.core.retrievers import BaseRetriever
from pydantic import PrivateAttr
from test_llamaindex_support import CountingLLM, KeywordEmbedding, build_index, scoped_settings

from llamaindex_valkey_cache import CachedQueryEngine, ValkeyCache

pytestmark = pytest.mark.standalone

BILLING = "How does billing and a refund work?"
SHIPPING = "When does my parcel shipping arrive?"


@pytest.fixture
def settings() -> Iterator[tuple[KeywordEmbedding, CountingLLM]]:
    with scoped_settings() as pair:
        yield pair


@pytest.fixture
def cache(standalone_url: str, prefix: str) -> ValkeyCache:
    return ValkeyCache(standalone_url, prefix=prefix)


@pytest.fixture
def index(settings: Any, cache: ValkeyCache) -> VectorStoreIndex:
    return build_index(cache)


def summary(response: Any) -> list[tuple[str, str | None, float | None, dict[str, Any], str]]:
    return [
        (n.node.node_id, n.node.ref_doc_id, n.score, dict(n.node.metadata), n.node.get_content())
        for n in response.source_nodes
    ]


def test_hit_skips_retrieval_and_llm_and_returns_the_same_response(
    settings: Any, index: VectorStoreIndex, cache: ValkeyCache
) -> None:
    embed, llm = settings
    engine = CachedQueryEngine(index.as_query_engine(similarity_top_k=2), cache=cache)
    first = engine.query(BILLING)
    calls, embeds = llm.calls, embed.calls
    hit = engine.query(BILLING)
    assert (llm.calls, embed.calls) == (calls, embeds)  # no LLM call, not even a query embedding
    assert isinstance(hit, Response)
    assert hit.response == first.response
    assert summary(hit) == summary(first) and len(hit.source_nodes) == 2
    assert hit.source_nodes[0].node.ref_doc_id == "billing.md"
    assert hit.metadata == first.metadata


async def test_aquery_hit(settings: Any, index: VectorStoreIndex, cache: ValkeyCache) -> None:
    _, llm = settings
    engine = CachedQueryEngine(index.as_query_engine(similarity_top_k=1), cache=cache)
    first = await engine.aquery(SHIPPING)
    hit = await engine.aquery(SHIPPING)
    assert llm.calls == 1 and hit.response == first.response and summary(hit) == summary(first)
    assert engine.query(SHIPPING).response == first.response  # sync and async share the entry


def test_entry_depends_on_the_responses_source_documents(
    settings: Any, index: VectorStoreIndex, cache: ValkeyCache
) -> None:
    _, llm = settings
    engine = CachedQueryEngine(index.as_query_engine(similarity_top_k=1), cache=cache)
    engine.query(BILLING)
    engine.query(SHIPPING)
    assert len(cache.dependents("billing.md")) == 1 and len(cache.dependents("shipping.md")) == 1
    assert cache.dependents("password.md") == []
    cache.invalidate_source("billing.md")
    engine.query(BILLING)
    engine.query(SHIPPING)
    assert llm.calls == 3  # billing recomputed, shipping still cached


def test_streaming_engine_stores_the_read_stream_and_replays_it(
    settings: Any, index: VectorStoreIndex, cache: ValkeyCache
) -> None:
    _, llm = settings
    engine = CachedQueryEngine(index.as_query_engine(similarity_top_k=1, streaming=True), cache=cache)
    first = engine.query(BILLING)
    assert isinstance(first, StreamingResponse)
    tokens = list(first.response_gen)
    assert len(tokens) > 2
    hit = engine.query(BILLING)
    assert isinstance(hit, StreamingResponse) and llm.calls == 1
    assert list(hit.response_gen) == tokens
    assert summary(hit) == summary(first)
    assert len(cache.dependents("billing.md")) == 1


def test_an_unread_stream_is_not_stored(settings: Any, index: VectorStoreIndex, cache: ValkeyCache) -> None:
    _, llm = settings
    engine = CachedQueryEngine(index.as_query_engine(similarity_top_k=1, streaming=True), cache=cache)
    stream = engine.query(SHIPPING)
    next(stream.response_gen)
    stream.response_gen.close()
    "".join(engine.query(SHIPPING).response_gen)
    assert llm.calls == 2
    "".join(engine.query(SHIPPING).response_gen)
    assert llm.calls == 2


async def test_async_streaming_engine(settings: Any, index: VectorStoreIndex, cache: ValkeyCache) -> None:
    _, llm = settings
    engine = CachedQueryEngine(
        index.as_query_engine(similarity_top_k=1, streaming=True, use_async=True), cache=cache
    )
    first = await engine.aquery(SHIPPING)
    assert isinstance(first, AsyncStreamingResponse)
    tokens = [t async for t in first.async_response_gen()]
    hit = await engine.aquery(SHIPPING)
    assert isinstance(hit, AsyncStreamingResponse) and llm.calls == 1
    assert [t async for t in hit.async_response_gen()] == tokens
    assert summary(hit) == summary(first)


class InvalidatingLLM(CountingLLM):
    """Invalidates a document while it is answering: the invalidation lands between lookup and store."""

    _during_call: Any = PrivateAttr(default=None)

    def _answer(self, prompt: str) -> str:
        if self._during_call is not None:
            self._during_call()
        return super()._answer(prompt)


@pytest.mark.parametrize("streaming", [False, True])
def test_an_answer_overtaken_by_an_invalidation_is_not_stored(
    settings: Any, cache: ValkeyCache, streaming: bool
) -> None:
    llm = InvalidatingLLM()
    Settings.llm = llm
    index = build_index(cache)
    engine = CachedQueryEngine(index.as_query_engine(similarity_top_k=1, streaming=streaming), cache=cache)
    llm._during_call = lambda: cache.invalidate_source("billing.md")
    response = engine.query(BILLING)
    text = "".join(response.response_gen) if streaming else response.response
    assert text.startswith("answer 1")
    assert cache.stats()["totals"]["refused"] == 1
    llm._during_call = None
    again = engine.query(BILLING)
    assert ("".join(again.response_gen) if streaming else again.response).startswith("answer 2")
    assert llm.calls == 2  # the overtaken answer was never served


def test_engines_are_told_apart_by_name_and_shape(
    settings: Any, index: VectorStoreIndex, cache: ValkeyCache
) -> None:
    _, llm = settings
    CachedQueryEngine(index.as_query_engine(similarity_top_k=1), cache=cache).query(BILLING)
    CachedQueryEngine(index.as_query_engine(similarity_top_k=1), cache=cache, name="other data").query(
        BILLING
    )
    CachedQueryEngine(index.as_query_engine(similarity_top_k=2), cache=cache).query(BILLING)
    custom = index.as_query_engine(similarity_top_k=1)
    custom.update_prompts(
        {"response_synthesizer:text_qa_template": PromptTemplate("{context_str}\nQ: {query_str}")}
    )
    CachedQueryEngine(custom, cache=cache).query(BILLING)
    assert llm.calls == 4
    CachedQueryEngine(index.as_query_engine(similarity_top_k=1), cache=cache).query(BILLING)
    assert llm.calls == 4


def test_bad_stored_answer_is_a_miss_and_discarded(
    settings: Any, index: VectorStoreIndex, cache: ValkeyCache
) -> None:
    from llama_index.core import QueryBundle

    _, llm = settings
    engine = CachedQueryEngine(index.as_query_engine(similarity_top_k=1), cache=cache)
    key = engine._key(QueryBundle(BILLING))
    cache.core.store(key, {"text": "stale", "nodes": [{"class": "os.system", "node": {}}], "metadata": None})
    assert engine.query(BILLING).response != "stale"
    assert llm.calls == 1 and cache.stats()["totals"]["bad"] == 1


class RetrieveThenAnswer(CustomQueryEngine):
    """A custom engine whose Response carries no source nodes: its retrievals still name the documents."""

    retriever: BaseRetriever

    def custom_query(self, query_str: str) -> str:
        nodes = self.retriever.retrieve(query_str)
        return Settings.llm.complete("\n".join(n.node.get_content() for n in nodes) + query_str).text


def test_documents_retrieved_during_the_query_are_dependencies(
    settings: Any, index: VectorStoreIndex, cache: ValkeyCache
) -> None:
    _, llm = settings
    engine = CachedQueryEngine(
        RetrieveThenAnswer(retriever=index.as_retriever(similarity_top_k=1)), cache=cache
    )
    first = engine.query(SHIPPING)
    assert first.source_nodes == []
    assert len(cache.dependents("shipping.md")) == 1
    cache.invalidate_source("shipping.md")
    engine.query(SHIPPING)
    assert llm.calls == 2


def test_prompts_and_retrieval_pass_through(index: VectorStoreIndex, cache: ValkeyCache) -> None:
    inner = index.as_query_engine(similarity_top_k=1)
    engine = CachedQueryEngine(inner, cache=cache)
    assert set(engine.get_prompts()) == {f"query_engine:{k}" for k in inner.get_prompts()}
    from llama_index.core import QueryBundle

    assert [n.node.ref_doc_id for n in engine.retrieve(QueryBundle(SHIPPING))] == ["shipping.md"]
