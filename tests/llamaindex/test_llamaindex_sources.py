"""Dependencies of cached LLM calls: the ref_doc_ids retrieved for the query the call answers.

Each query below retrieves exactly one document (top_k=1, keyword embeddings), so "this query's entries
depend on that document and on nothing else" is checked by the dependents of every document.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import valkey
from llama_index.core import Settings, VectorStoreIndex
from llama_index.core.base.response.schema import AsyncStreamingResponse, StreamingResponse

from llamaindex_support import DOCS, build_index
from llamaindex_valkey_cache import CachedLLM, LlamaIndexCache

pytestmark = pytest.mark.standalone


QUERIES = {
    "billing.md": "How does billing and a refund work?",
    "password.md": "How do I reset my password at login?",
    "shipping.md": "When does my parcel shipping arrive?",
    "warranty.md": "Does the warranty cover repair?",
}


@pytest.fixture
def index(settings: Any, cache: LlamaIndexCache) -> VectorStoreIndex:
    _, inner = settings
    Settings.llm = CachedLLM(llm=inner, cache=cache)
    return build_index(cache)


def dependents(cache: LlamaIndexCache) -> dict[str, list[str]]:
    return {doc: cache.dependents(doc) for doc in DOCS}


def assert_each_query_depends_on_its_document_only(
    cache: LlamaIndexCache, asked: list[str], per_query: int = 1
) -> None:
    deps = dependents(cache)
    for doc in DOCS:
        expected = per_query if doc in asked else 0
        assert len(deps[doc]) == expected, f"{doc}: {deps[doc]}"
    entries = [key for doc in asked for key in deps[doc]]
    assert len(set(entries)) == len(entries), "an entry depends on two queries' documents"


def test_sync_query_entry_depends_on_the_retrieved_document(
    index: VectorStoreIndex, cache: LlamaIndexCache
) -> None:
    response = index.as_query_engine(similarity_top_k=1).query(QUERIES["billing.md"])
    assert [n.node.ref_doc_id for n in response.source_nodes] == ["billing.md"]
    assert_each_query_depends_on_its_document_only(cache, ["billing.md"])


@pytest.mark.parametrize("mode", ["compact", "refine", "tree_summarize", "simple_summarize", "accumulate"])
async def test_async_queries_in_gather_keep_their_own_sources(
    index: VectorStoreIndex, cache: LlamaIndexCache, mode: str
) -> None:
    engine = index.as_query_engine(similarity_top_k=1, response_mode=mode, use_async=True)
    responses = await asyncio.gather(*(engine.aquery(q) for q in QUERIES.values()))
    assert [r.source_nodes[0].node.ref_doc_id for r in responses] == list(QUERIES)
    assert_each_query_depends_on_its_document_only(cache, list(QUERIES))


def test_queries_in_a_thread_pool_keep_their_own_sources(
    index: VectorStoreIndex, cache: LlamaIndexCache
) -> None:
    engine = index.as_query_engine(similarity_top_k=1)
    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(engine.query, QUERIES.values()))
    assert [r.source_nodes[0].node.ref_doc_id for r in responses] == list(QUERIES)
    assert_each_query_depends_on_its_document_only(cache, list(QUERIES))


@pytest.mark.parametrize("mode", ["compact", "refine", "tree_summarize"])
def test_streaming_query_engines_attach_sources_to_the_lazy_llm_call(
    index: VectorStoreIndex, cache: LlamaIndexCache, mode: str
) -> None:
    engine = index.as_query_engine(similarity_top_k=1, response_mode=mode, streaming=True)
    streams = [engine.query(q) for q in QUERIES.values()]  # all started before any is read
    for stream in reversed(streams):
        assert isinstance(stream, StreamingResponse)
        assert "".join(stream.response_gen).startswith("answer")
    assert_each_query_depends_on_its_document_only(cache, list(QUERIES))


@pytest.mark.parametrize("mode", ["compact", "refine", "tree_summarize"])
async def test_async_streaming_query_engines_attach_sources(
    index: VectorStoreIndex, cache: LlamaIndexCache, mode: str
) -> None:
    engine = index.as_query_engine(similarity_top_k=1, response_mode=mode, streaming=True, use_async=True)
    streams = await asyncio.gather(*(engine.aquery(q) for q in QUERIES.values()))

    async def read(stream: Any) -> str:
        assert isinstance(stream, AsyncStreamingResponse)
        return "".join([t async for t in stream.async_response_gen()])

    texts = await asyncio.gather(*(read(s) for s in streams))
    assert all(t.startswith("answer") for t in texts)
    assert_each_query_depends_on_its_document_only(cache, list(QUERIES))


def test_context_chat_engine(index: VectorStoreIndex, cache: LlamaIndexCache) -> None:
    chat = index.as_chat_engine(chat_mode="context", similarity_top_k=1)
    chat.chat(QUERIES["shipping.md"])
    stream = index.as_chat_engine(chat_mode="context", similarity_top_k=1).stream_chat(QUERIES["warranty.md"])
    assert "".join(stream.response_gen).startswith("answer")
    assert_each_query_depends_on_its_document_only(cache, ["shipping.md", "warranty.md"])


async def test_async_chat_engines(index: VectorStoreIndex, cache: LlamaIndexCache) -> None:
    await index.as_chat_engine(chat_mode="context", similarity_top_k=1).achat(QUERIES["billing.md"])
    stream = await index.as_chat_engine(chat_mode="condense_plus_context", similarity_top_k=1).astream_chat(
        QUERIES["password.md"]
    )
    assert "".join([t async for t in stream.async_response_gen()]).startswith("answer")
    assert_each_query_depends_on_its_document_only(cache, ["billing.md", "password.md"])


def test_condense_call_has_no_sources(index: VectorStoreIndex, cache: LlamaIndexCache) -> None:
    chat = index.as_chat_engine(chat_mode="condense_plus_context", similarity_top_k=1)
    chat.chat(QUERIES["billing.md"])
    chat.chat("And how long does a refund for billing take?")  # condense (no retrieval yet), then answer
    stats = cache.stats()["totals"]
    assert stats["writes"] == 3
    assert len(cache.dependents("billing.md")) == 2  # the two answers; the condense entry has no source
    assert_each_query_depends_on_its_document_only(cache, ["billing.md"], per_query=2)
    stream = index.as_chat_engine(chat_mode="condense_plus_context", similarity_top_k=1)
    stream.chat(QUERIES["warranty.md"])
    reply = stream.stream_chat("and the repair warranty?")
    "".join(reply.response_gen)
    assert len(cache.dependents("warranty.md")) == 2 and cache.stats()["totals"]["writes"] == 6


def test_a_call_outside_any_query_has_no_sources(index: VectorStoreIndex, cache: LlamaIndexCache) -> None:
    index.as_query_engine(similarity_top_k=1).query(QUERIES["billing.md"])
    Settings.llm.complete("Write a haiku.")  # after a query, in the same thread: still no sources
    assert cache.stats()["totals"]["writes"] == 2
    assert_each_query_depends_on_its_document_only(cache, ["billing.md"])


def test_content_type_from_node_metadata_sets_the_ttl(
    index: VectorStoreIndex, cache: LlamaIndexCache, standalone_url: str
) -> None:
    engine = index.as_query_engine(similarity_top_k=1)
    engine.query(QUERIES["shipping.md"])  # realtime: 300 s
    engine.query(QUERIES["billing.md"])  # static: 86400 s
    engine.query(QUERIES["warranty.md"])  # untyped: the cache default (documentation, 21600 s)
    client = valkey.Valkey.from_url(standalone_url)
    ttl = {doc: client.ttl(cache.dependents(doc)[0]) for doc in ("shipping.md", "billing.md", "warranty.md")}
    assert 0 < ttl["shipping.md"] <= 300
    assert 21600 < ttl["billing.md"] <= 86400
    assert 300 < ttl["warranty.md"] <= 21600


def test_nodes_handed_to_a_synthesizer_are_sources(index: VectorStoreIndex, cache: LlamaIndexCache) -> None:
    from llama_index.core import get_response_synthesizer

    nodes = index.as_retriever(similarity_top_k=1).retrieve(QUERIES["password.md"])
    get_response_synthesizer().synthesize("summarize", nodes)  # no retrieval inside this call
    assert_each_query_depends_on_its_document_only(cache, ["password.md"])


def test_invalidating_a_document_removes_its_llm_entries_only(
    index: VectorStoreIndex, cache: LlamaIndexCache
) -> None:
    inner = Settings.llm.llm
    engine = index.as_query_engine(similarity_top_k=1)
    for q in QUERIES.values():
        engine.query(q)
    assert inner.calls == 4
    assert cache.invalidate_source("billing.md") == 1
    for q in QUERIES.values():
        engine.query(q)
    assert inner.calls == 5  # only the billing answer was recomputed


def test_ledger_holds_at_most_max_spans_ended_spans_within_the_retention() -> None:
    # A busy process ends many spans per second: within the retention, the ledger keeps the last
    # `max_spans` of them (the oldest are forgotten first), not every span of the last ten minutes.
    from llamaindex_valkey_cache.tracking import Ledger, Retrieved

    ledger = Ledger(retention=600, max_spans=50, clock=lambda: 0.0)
    ledger.enter("old", None)
    ledger.file("old", [Retrieved("a.md", {})])
    ledger.end("old")
    for i in range(1000):
        ledger.enter(f"s{i}", None)
        ledger.end(f"s{i}")
    assert len(ledger._ended) <= 50 and len(ledger._roots) <= 50
    assert ledger.under("old") == ()  # the oldest ended root went first, its retrievals with it
    ledger.enter("new", None)
    ledger.file("new", [Retrieved("b.md", {})])
    ledger.end("new")
    assert [r.id for r in ledger.under("new")] == ["b.md"]  # the latest are kept


def test_ledger_forgets_finished_roots_after_the_retention() -> None:
    from llamaindex_valkey_cache.tracking import Ledger, Retrieved

    now = [0.0]
    ledger = Ledger(retention=10, clock=lambda: now[0])
    ledger.enter("root", None)
    ledger.enter("child", "root")
    ledger.file("child", [Retrieved("a.md", {})])
    assert [r.id for r in ledger.under("child")] == ["a.md"]
    ledger.end("child")
    ledger.end("root")
    now[0] = 5.0
    ledger.end("other")  # still within the retention: a lazy stream may still need the records
    assert [r.id for r in ledger.under("child")] == ["a.md"]
    now[0] = 11.0
    ledger.end("other")
    assert ledger.under("root") == () and ledger.root_of("child") == "child"
