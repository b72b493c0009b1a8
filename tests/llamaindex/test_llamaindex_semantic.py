"""Semantic matching in LlamaIndex: `CachedQueryEngine(..., embed_model=...)`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from llama_index.core import VectorStoreIndex
from llama_index.core.vector_stores import ExactMatchFilter, MetadataFilters
from semantic_fakes import REFUND, REFUND_NEGATED, REFUND_PARAPHRASE, UNRELATED, llamaindex_embedding

from llamaindex_support import CountingLLM, KeywordEmbedding, build_index, scoped_settings
from llamaindex_valkey_cache import CachedQueryEngine, LlamaIndexCache

pytestmark = pytest.mark.standalone


@pytest.fixture
def settings() -> Iterator[tuple[KeywordEmbedding, CountingLLM]]:
    with scoped_settings() as pair:
        yield pair


@pytest.fixture
def cache(standalone_url: str, prefix: str) -> LlamaIndexCache:
    return LlamaIndexCache(standalone_url, prefix=prefix)


@pytest.fixture
def index(settings: Any, cache: LlamaIndexCache) -> VectorStoreIndex:
    return build_index(cache)


def engine(index: VectorStoreIndex, cache: LlamaIndexCache, **kw: Any) -> CachedQueryEngine:
    return CachedQueryEngine(
        index.as_query_engine(**kw), cache=cache, embed_model=llamaindex_embedding(), similarity_threshold=0.9
    )


def test_a_similar_query_is_answered_from_the_cache(
    settings: Any, index: Any, cache: LlamaIndexCache
) -> None:
    _, llm = settings
    qe = engine(index, cache)
    first = qe.query(REFUND)
    calls = llm.calls
    second = qe.query(REFUND_PARAPHRASE)
    assert str(second) == str(first) and llm.calls == calls
    assert [n.node.ref_doc_id for n in second.source_nodes] == [n.node.ref_doc_id for n in first.source_nodes]
    qe.query(UNRELATED)
    assert llm.calls == calls + 1


async def test_async_queries_match_too(settings: Any, index: Any, cache: LlamaIndexCache) -> None:
    _, llm = settings
    qe = engine(index, cache)
    first = await qe.aquery(REFUND)
    calls = llm.calls
    assert str(await qe.aquery(REFUND_PARAPHRASE)) == str(first) and llm.calls == calls


def test_engines_with_other_filters_never_share_a_semantic_hit(
    settings: Any, index: Any, cache: LlamaIndexCache
) -> None:
    _, llm = settings
    a = engine(
        index, cache, filters=MetadataFilters(filters=[ExactMatchFilter(key="file", value="billing.md")])
    )
    b = engine(
        index, cache, filters=MetadataFilters(filters=[ExactMatchFilter(key="file", value="password.md")])
    )
    c = engine(
        index, cache, filters=MetadataFilters(filters=[ExactMatchFilter(key="file", value="shipping.md")])
    )
    a.query(REFUND)
    calls = llm.calls
    a.query(REFUND_PARAPHRASE)
    assert llm.calls == calls  # a's own semantic hit
    b.query(REFUND_PARAPHRASE)
    assert llm.calls == calls + 1  # not a's answer
    c.query(REFUND)  # the very same query: another partition all the same
    assert llm.calls == calls + 2


def test_a_changed_document_retires_the_semantic_answers_built_on_it(
    settings: Any, index: Any, cache: LlamaIndexCache
) -> None:
    _, llm = settings
    qe = engine(index, cache)
    qe.query(REFUND)
    calls = llm.calls
    qe.query(REFUND_PARAPHRASE)
    assert llm.calls == calls
    assert cache.invalidate_source("billing.md") >= 1
    qe.query(REFUND_PARAPHRASE)
    assert llm.calls == calls + 1


def test_the_guard_refuses_a_negated_query(settings: Any, index: Any, cache: LlamaIndexCache) -> None:
    _, llm = settings
    qe = engine(index, cache)
    qe.query(REFUND)
    calls = llm.calls
    qe.query(REFUND_NEGATED)
    assert llm.calls == calls + 1


def test_streaming_engines_replay_a_semantic_hit(settings: Any, index: Any, cache: LlamaIndexCache) -> None:
    qe = engine(index, cache, streaming=True)
    first = "".join(qe.query(REFUND).response_gen)
    assert "".join(qe.query(REFUND_PARAPHRASE).response_gen) == first


def test_an_embed_model_of_the_wrong_type_is_a_configuration_error(
    index: Any, cache: LlamaIndexCache
) -> None:
    with pytest.raises(TypeError):
        CachedQueryEngine(index.as_query_engine(), cache=cache, embed_model=lambda t: [1.0])  # type: ignore[arg-type]
