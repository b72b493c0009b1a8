"""LlamaIndexCache: public API, options, invalidation methods, sharing with LangChain, clusters."""

from __future__ import annotations

from typing import Any

import pytest
import valkey
from langchain_core.language_models import FakeListChatModel
from llama_index.core import Settings
from llama_index.core.ingestion import DocstoreStrategy, IngestionPipeline
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.storage.docstore import SimpleDocumentStore

import llamaindex_valkey_cache
from langchain_valkey_cache import ValkeyCache as LangChainCache
from llamaindex_support import (
    CountingLLM,
    TextVectorStore,
    build_index,
    documents,
)
from llamaindex_valkey_cache import (
    CachedLLM,
    CachedQueryEngine,
    InvalidatingDocstore,
    InvalidatingPydanticVectorStore,
    LlamaIndexCache,
)
from valkey_rag_cache import AnswerCache, DoctorReport, InvalidationError, Source

BILLING = "How does billing and a refund work?"
WARRANTY = "Does the warranty cover repair?"


def test_public_api_is_pinned() -> None:
    assert sorted(llamaindex_valkey_cache.__all__) == [
        "CachedFunctionCallingLLM",
        "CachedLLM",
        "CachedQueryEngine",
        "InvalidatingDocstore",
        "InvalidatingPydanticVectorStore",
        "LlamaIndexCache",
    ]


def test_constructor_makes_no_network_call() -> None:
    cache = LlamaIndexCache("valkey://127.0.0.1:1", prefix="nowhere", namespace="docs:technical")
    assert repr(cache) == "LlamaIndexCache(prefix='nowhere', namespace='docs:technical')"
    assert cache.namespace == "docs:technical"


@pytest.mark.standalone
def test_core_is_shared_or_built_never_both(standalone_url: str, prefix: str) -> None:
    core = AnswerCache(standalone_url, prefix=prefix)
    assert LlamaIndexCache(core=core).core is core
    with pytest.raises(TypeError):
        LlamaIndexCache(standalone_url, core=core)
    with pytest.raises(TypeError):
        LlamaIndexCache(core=core, namespace="other")
    # Also an option equal to the core's default: it is given, and would not apply to a shared core.
    other = AnswerCache(standalone_url, prefix=prefix, namespace="other")
    for option in ({"namespace": "default"}, {"prefix": "llmcache"}, {"timeout": 0.5}):
        with pytest.raises(TypeError, match=next(iter(option))):
            LlamaIndexCache(core=other, **option)  # type: ignore[arg-type]


@pytest.mark.standalone
def test_sources_scope_and_content_type_key(standalone_url: str, prefix: str) -> None:
    cache = LlamaIndexCache(
        standalone_url, prefix=prefix, content_type_key="kind", ttl_policy={"realtime": 120}
    )
    inner = CountingLLM()
    llm = CachedLLM(llm=inner, cache=cache)
    with cache.sources([Source("prices.csv", "realtime"), "catalog.md"]):
        llm.complete("What does the lamp cost?")
    (key,) = cache.dependents("prices.csv")
    assert cache.dependents("catalog.md") == [key]
    assert 0 < valkey.Valkey.from_url(standalone_url).ttl(key) <= 120
    from llamaindex_valkey_cache.tracking import Retrieved

    assert cache.source_of(Retrieved("a.md", {"kind": "static", "content_type": "realtime"})) == Source(
        "a.md", "static"
    )
    assert cache.source_of(Retrieved("b.md", {"kind": 3})) == Source("b.md")


@pytest.mark.standalone
async def test_invalidation_methods_and_async_twins(standalone_url: str, prefix: str) -> None:
    cache = LlamaIndexCache(standalone_url, prefix=prefix, namespace="docs:technical")
    other = LlamaIndexCache(standalone_url, prefix=prefix, namespace="faqs")
    inner = CountingLLM()
    tech, faqs = CachedLLM(llm=inner, cache=cache), CachedLLM(llm=inner, cache=other)

    def fill() -> None:
        with cache.sources(["a.md"]):
            tech.complete("one")
            faqs.complete("one")
        with cache.sources(["b.md"]):
            tech.complete("two")

    fill()
    assert inner.calls == 3
    assert len(await cache.adependents("a.md")) == 2
    assert await cache.ainvalidate_source("a.md") == 2
    assert await cache.ainvalidate_sources(["b.md"]) == 1
    fill()
    assert inner.calls == 6
    cache.invalidate_namespace("docs")  # docs:technical, not faqs
    fill()
    assert inner.calls == 8
    await other.ainvalidate_all()  # every namespace under the prefix
    fill()
    assert inner.calls == 11
    stats = await cache.astats()
    assert stats["totals"]["hits"] == 1 and stats["totals"]["writes"] == 11
    assert cache.stats()["namespaces"]["faqs"]["hits"] == 1
    assert await cache.apurge() >= 0 and cache.purge() >= 0
    assert cache.clear() >= 1
    tech.complete("one")
    assert inner.calls == 12
    assert isinstance(cache.doctor(), DoctorReport)


def test_invalidation_raises_when_valkey_is_down_while_lookups_degrade() -> None:
    cache = LlamaIndexCache("valkey://127.0.0.1:1", prefix="down", timeout=0.2)
    inner = CountingLLM()
    llm = CachedLLM(llm=inner, cache=cache)
    assert llm.complete("still answers").text.startswith("answer 1")
    assert llm.complete("still answers").text.startswith("answer 2")  # a miss, never an exception
    with pytest.raises(InvalidationError):
        cache.invalidate_source("a.md")


@pytest.mark.standalone
def test_langchain_and_llamaindex_apps_share_invalidation(
    settings: Any, standalone_url: str, prefix: str
) -> None:
    """A LangChain app and a LlamaIndex app on one prefix: either side's invalidate_source reaches both."""
    _, inner = settings
    li_cache = LlamaIndexCache(standalone_url, prefix=prefix, namespace="llamaindex")
    lc_cache = LangChainCache(standalone_url, prefix=prefix, namespace="langchain")
    Settings.llm = CachedLLM(llm=inner, cache=li_cache)
    engine = build_index(li_cache).as_query_engine(similarity_top_k=1)
    chat = FakeListChatModel(responses=[f"lc answer {i}" for i in range(10)], cache=lc_cache)

    def langchain_app() -> str:
        with lc_cache.sources(["billing.md"]):  # the document its retriever returned
            return str(chat.invoke("How does billing work?").content)

    def llamaindex_app() -> str:
        return str(engine.query(BILLING))

    lc_first, li_first = langchain_app(), llamaindex_app()
    assert langchain_app() == lc_first and llamaindex_app() == li_first and inner.calls == 1
    assert len(li_cache.dependents("billing.md")) == 2  # one entry per framework
    assert li_cache.invalidate_source("billing.md") == 2  # from the LlamaIndex side
    lc_second, li_second = langchain_app(), llamaindex_app()
    assert lc_second != lc_first and li_second != li_first
    assert lc_cache.invalidate_source("billing.md") == 2  # and from the LangChain side
    assert langchain_app() not in (lc_first, lc_second)
    assert llamaindex_app() not in (li_first, li_second) and inner.calls == 3


@pytest.mark.standalone
def test_core_answer_cache_entries_are_invalidated_through_the_adapter(
    standalone_url: str, prefix: str
) -> None:
    core = AnswerCache(standalone_url, prefix=prefix, namespace="elsewhere")
    key = core.key("qa", {"q": "refunds"})
    assert core.store(key, {"a": "5 days"}, sources=["billing.md"])
    assert LlamaIndexCache(standalone_url, prefix=prefix).invalidate_source("billing.md") == 1
    assert core.lookup(key) is None


# -- a real Valkey Cluster --------------------------------------------------------------------------


@pytest.mark.cluster
def test_cluster_llm_and_answer_caches_with_ingestion(settings: Any, cluster_url: str, prefix: str) -> None:
    _, inner = settings
    docs_cache = LlamaIndexCache(cluster_url, prefix=prefix, namespace="docs:technical")
    faqs_cache = LlamaIndexCache(cluster_url, prefix=prefix, namespace="faqs")  # another hash slot
    Settings.llm = CachedLLM(llm=inner, cache=docs_cache)
    vector_store = InvalidatingPydanticVectorStore(TextVectorStore(), docs_cache)
    pipeline = IngestionPipeline(
        transformations=[SentenceSplitter(chunk_size=256, chunk_overlap=0), Settings.embed_model],
        docstore=InvalidatingDocstore(SimpleDocumentStore(), docs_cache),
        vector_store=vector_store,
        docstore_strategy=DocstoreStrategy.UPSERTS,
    )
    pipeline.run(documents=documents())
    from llama_index.core import VectorStoreIndex

    index = VectorStoreIndex.from_vector_store(vector_store)
    answers = CachedQueryEngine(index.as_query_engine(similarity_top_k=1), cache=faqs_cache)
    first = {q: str(answers.query(q)) for q in (BILLING, WARRANTY)}
    assert {q: str(answers.query(q)) for q in (BILLING, WARRANTY)} == first and inner.calls == 2
    assert len(docs_cache.dependents("warranty.md")) == 2  # the LLM entry and the answer, in two slots
    pipeline.run(documents=documents(warranty_md="The warranty now covers repair for five years."))
    assert docs_cache.dependents("warranty.md") == []
    second = {q: str(answers.query(q)) for q in (BILLING, WARRANTY)}
    assert second[BILLING] == first[BILLING] and second[WARRANTY] != first[WARRANTY]
    assert inner.calls == 3


@pytest.mark.cluster
async def test_cluster_async_streams_and_namespaces(cluster_url: str, prefix: str) -> None:
    inner = CountingLLM()
    a = CachedLLM(llm=inner, cache=LlamaIndexCache(cluster_url, prefix=prefix, namespace="docs:a"))
    b = CachedLLM(llm=inner, cache=LlamaIndexCache(cluster_url, prefix=prefix, namespace="support"))
    with a.cache.sources(["manual.md"]):
        live = [c.delta async for c in await a.astream_complete("stream on a cluster")]
        await b.acomplete("other slot")
    assert [c.delta async for c in await a.astream_complete("stream on a cluster")] == live
    assert inner.calls == 2
    assert await b.cache.ainvalidate_source("manual.md") == 2
    a.cache.invalidate_namespace("docs")
    await a.acomplete("stream on a cluster")
    await b.acomplete("other slot")
    assert inner.calls == 4
