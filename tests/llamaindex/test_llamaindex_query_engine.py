"""CachedQueryEngine: whole answers, their source nodes, streaming engines, invalidation and races."""

from __future__ import annotations

from typing import Any

import pytest
from llama_index.core import Document, PromptTemplate, QueryBundle, Settings, VectorStoreIndex
from llama_index.core.base.response.schema import AsyncStreamingResponse, Response, StreamingResponse
from llama_index.core.indices.vector_store.retrievers import VectorIndexRetriever
from llama_index.core.postprocessor import SimilarityPostprocessor
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.query_engine import CustomQueryEngine, RetrieverQueryEngine
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import ImageNode, NodeWithScore, TextNode
from llama_index.core.vector_stores import ExactMatchFilter, MetadataFilters
from llama_index.core.vector_stores.types import VectorStoreQueryMode
from pydantic import BaseModel, PrivateAttr

from llamaindex_support import CountingLLM, build_index
from llamaindex_valkey_cache import CachedQueryEngine, LlamaIndexCache

pytestmark = pytest.mark.standalone

BILLING = "How does billing and a refund work?"
SHIPPING = "When does my parcel shipping arrive?"


@pytest.fixture
def index(settings: Any, cache: LlamaIndexCache) -> VectorStoreIndex:
    return build_index(cache)


def summary(response: Any) -> list[tuple[str, str | None, float | None, dict[str, Any], str]]:
    return [
        (n.node.node_id, n.node.ref_doc_id, n.score, dict(n.node.metadata), n.node.get_content())
        for n in response.source_nodes
    ]


def test_hit_skips_retrieval_and_llm_and_returns_the_same_response(
    settings: Any, index: VectorStoreIndex, cache: LlamaIndexCache
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


async def test_aquery_hit(settings: Any, index: VectorStoreIndex, cache: LlamaIndexCache) -> None:
    _, llm = settings
    engine = CachedQueryEngine(index.as_query_engine(similarity_top_k=1), cache=cache)
    first = await engine.aquery(SHIPPING)
    hit = await engine.aquery(SHIPPING)
    assert llm.calls == 1 and hit.response == first.response and summary(hit) == summary(first)
    assert engine.query(SHIPPING).response == first.response  # sync and async share the entry


def test_entry_depends_on_the_responses_source_documents(
    settings: Any, index: VectorStoreIndex, cache: LlamaIndexCache
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
    settings: Any, index: VectorStoreIndex, cache: LlamaIndexCache
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


def test_an_unread_stream_is_not_stored(
    settings: Any, index: VectorStoreIndex, cache: LlamaIndexCache
) -> None:
    _, llm = settings
    engine = CachedQueryEngine(index.as_query_engine(similarity_top_k=1, streaming=True), cache=cache)
    stream = engine.query(SHIPPING)
    next(stream.response_gen)
    stream.response_gen.close()
    "".join(engine.query(SHIPPING).response_gen)
    assert llm.calls == 2
    "".join(engine.query(SHIPPING).response_gen)
    assert llm.calls == 2


async def test_async_streaming_engine(settings: Any, index: VectorStoreIndex, cache: LlamaIndexCache) -> None:
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
    settings: Any, cache: LlamaIndexCache, streaming: bool
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
    settings: Any, index: VectorStoreIndex, cache: LlamaIndexCache
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
    settings: Any, index: VectorStoreIndex, cache: LlamaIndexCache
) -> None:
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
    settings: Any, index: VectorStoreIndex, cache: LlamaIndexCache
) -> None:
    _, llm = settings
    engine = CachedQueryEngine(
        RetrieveThenAnswer(retriever=index.as_retriever(similarity_top_k=1)), cache=cache, name="handbook"
    )
    first = engine.query(SHIPPING)
    assert first.source_nodes == []
    assert len(cache.dependents("shipping.md")) == 1
    cache.invalidate_source("shipping.md")
    engine.query(SHIPPING)
    assert llm.calls == 2


def test_prompts_and_retrieval_pass_through(index: VectorStoreIndex, cache: LlamaIndexCache) -> None:
    inner = index.as_query_engine(similarity_top_k=1)
    engine = CachedQueryEngine(inner, cache=cache)
    assert set(engine.get_prompts()) == {f"query_engine:{k}" for k in inner.get_prompts()}
    assert [n.node.ref_doc_id for n in engine.retrieve(QueryBundle(SHIPPING))] == ["shipping.md"]


# -- keys: everything that selects an engine's answers -----------------------------------------------


def tenant_index(cache: LlamaIndexCache) -> VectorStoreIndex:
    docs = [
        Document(text="Billing refund for tenant A takes five days.", id_="a.md", metadata={"tenant": "a"}),
        Document(text="Billing refund for tenant B takes thirty days.", id_="b.md", metadata={"tenant": "b"}),
    ]
    return build_index(cache, docs)


def tenant(name: str) -> MetadataFilters:
    return MetadataFilters(filters=[ExactMatchFilter(key="tenant", value=name)])


def test_engines_with_different_filters_never_share_answers(settings: Any, cache: LlamaIndexCache) -> None:
    """Per-tenant retrieval on one index: tenant B must never be served tenant A's answer."""
    _, llm = settings
    index = tenant_index(cache)

    def ask(name: str) -> Any:
        engine = index.as_query_engine(filters=tenant(name), similarity_top_k=1)
        return CachedQueryEngine(engine, cache=cache).query(BILLING)

    a, b = ask("a"), ask("b")
    assert [n.node.ref_doc_id for n in a.source_nodes] == ["a.md"]
    assert [n.node.ref_doc_id for n in b.source_nodes] == ["b.md"]
    assert llm.calls == 2 and a.response != b.response
    assert ask("a").response == a.response and ask("b").response == b.response  # each tenant's own hit
    assert llm.calls == 2


def test_each_retriever_and_engine_setting_is_part_of_the_key(settings: Any, cache: LlamaIndexCache) -> None:
    index = tenant_index(cache)
    bundle = QueryBundle(BILLING)

    def key(**kwargs: Any) -> Any:
        return CachedQueryEngine(index.as_query_engine(**kwargs), cache=cache)._key(bundle)

    base = key(similarity_top_k=1)
    variants = {
        "filters": key(similarity_top_k=1, filters=tenant("a")),
        "other filters": key(similarity_top_k=1, filters=tenant("b")),
        "doc_ids": key(similarity_top_k=1, doc_ids=["a.md"]),
        "node_ids": CachedQueryEngine(
            RetrieverQueryEngine.from_args(VectorIndexRetriever(index, similarity_top_k=1, node_ids=["n1"])),
            cache=cache,
        )._key(bundle),
        "query mode": key(similarity_top_k=1, vector_store_query_mode=VectorStoreQueryMode.MMR),
        "alpha": key(similarity_top_k=1, alpha=0.3),
        "vector store kwargs": key(similarity_top_k=1, vector_store_kwargs={"ef": 64}),
        "postprocessor": key(
            similarity_top_k=1, node_postprocessors=[SimilarityPostprocessor(similarity_cutoff=0.5)]
        ),
        "its setting": key(
            similarity_top_k=1, node_postprocessors=[SimilarityPostprocessor(similarity_cutoff=0.9)]
        ),
        "output_cls": key(similarity_top_k=1, output_cls=Verdict),
        "response mode": key(similarity_top_k=1, response_mode="tree_summarize"),
    }
    assert len({base, *variants.values()}) == len(variants) + 1
    # The same settings, built again (another engine, another filters object), find the same answers.
    assert key(similarity_top_k=1) == base
    assert key(similarity_top_k=1, filters=tenant("a")) == variants["filters"]
    assert (
        key(similarity_top_k=1, node_postprocessors=[SimilarityPostprocessor(similarity_cutoff=0.5)])
        == variants["postprocessor"]
    )


class Verdict(BaseModel):
    answer: str


class TenantRetriever(BaseRetriever):
    """A retriever whose tenant lives where the cache cannot read it."""

    def __init__(self, index: VectorStoreIndex, tenant: str) -> None:
        super().__init__()
        self._inner = index.as_retriever(similarity_top_k=1, filters=tenant_filters(tenant))

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return self._inner.retrieve(query_bundle)


def tenant_filters(name: str) -> MetadataFilters:
    return tenant(name)


class OwnPostprocessor(BaseNodePostprocessor):
    """An application's own postprocessor: its settings could be anywhere (this one keeps every node)."""

    def _postprocess_nodes(self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None) -> Any:
        return nodes


def test_an_engine_whose_shape_cannot_be_read_needs_a_name(settings: Any, cache: LlamaIndexCache) -> None:
    _, llm = settings
    index = tenant_index(cache)
    unreadable = {
        "custom engine": lambda: RetrieveThenAnswer(retriever=index.as_retriever(similarity_top_k=1)),
        "custom retriever": lambda: RetrieverQueryEngine.from_args(TenantRetriever(index, "a")),
        "custom postprocessor": lambda: index.as_query_engine(node_postprocessors=[OwnPostprocessor()]),
    }
    for what, make in unreadable.items():
        with pytest.raises(ValueError, match="pass name="):
            CachedQueryEngine(make(), cache=cache)
        assert CachedQueryEngine(make(), cache=cache, name=what).name == what
    # Named by what they answer from, two tenants' engines keep their answers apart.
    a = CachedQueryEngine(RetrieverQueryEngine.from_args(TenantRetriever(index, "a")), cache=cache, name="a")
    b = CachedQueryEngine(RetrieverQueryEngine.from_args(TenantRetriever(index, "b")), cache=cache, name="b")
    assert [n.node.ref_doc_id for n in a.query(BILLING).source_nodes] == ["a.md"]
    assert [n.node.ref_doc_id for n in b.query(BILLING).source_nodes] == ["b.md"]
    assert llm.calls == 2


def test_an_engine_that_becomes_unreadable_is_not_cached(
    settings: Any, index: VectorStoreIndex, cache: LlamaIndexCache, caplog: pytest.LogCaptureFixture
) -> None:
    _, llm = settings
    inner = index.as_query_engine(similarity_top_k=1)
    engine = CachedQueryEngine(inner, cache=cache)
    inner._node_postprocessors = [OwnPostprocessor()]  # changed after wrapping
    engine.query(BILLING)
    engine.query(BILLING)
    assert llm.calls == 2 and cache.stats()["totals"]["writes"] == 0
    assert "not caching" in caplog.text


# -- source nodes: data only ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "node",
    [
        {"class": "ImageNode", "node": {"text": "chart", "image_path": "/etc/passwd"}, "score": 1.0},
        {"class": "ImageDocument", "node": {"text": "chart", "image_url": "http://169.254.169.254/"}},
        {"class": "IndexNode", "node": {"text": "sub", "index_id": "i", "obj": {"id_": "x"}}, "score": 1.0},
    ],
)
def test_stored_nodes_pointing_to_files_or_objects_are_bad_data(
    settings: Any, index: VectorStoreIndex, cache: LlamaIndexCache, node: dict[str, Any]
) -> None:
    _, llm = settings
    engine = CachedQueryEngine(index.as_query_engine(similarity_top_k=1), cache=cache)
    cache.core.store(engine._key(QueryBundle(BILLING)), {"text": "stale", "nodes": [node], "metadata": None})
    response = engine.query(BILLING)
    assert response.response != "stale" and llm.calls == 1
    assert all(type(n.node) is TextNode and not hasattr(n.node, "image_path") for n in response.source_nodes)
    assert cache.stats()["totals"]["bad"] == 1


def test_image_source_nodes_are_stored_as_the_text_they_read_as(
    settings: Any, cache: LlamaIndexCache, tmp_path: Any
) -> None:
    _, llm = settings
    picture = tmp_path / "parcel.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n")
    node = ImageNode(id_="photo", text="A shipping parcel photo.", image_path=str(picture), metadata={"k": 1})
    engine = CachedQueryEngine(
        VectorStoreIndex(nodes=[node]).as_query_engine(similarity_top_k=1), cache=cache
    )
    live = engine.query(SHIPPING)
    assert isinstance(live.source_nodes[0].node, ImageNode)
    hit = engine.query(SHIPPING)
    assert llm.calls == 1 and hit.response == live.response
    (source,) = hit.source_nodes
    assert type(source.node) is TextNode and source.node.text == "A shipping parcel photo."
    assert source.node.node_id == "photo" and source.node.metadata == {"k": 1}
    assert "parcel.png" not in source.node.model_dump_json()


@pytest.mark.parametrize("name", [[], {}, ["TextNode"], 1, None])
def test_a_stored_node_class_that_is_not_a_string_is_bad_data(name: Any) -> None:
    # A list or dict there is unhashable: a TypeError would be logged as a bug in the decoder.
    from llamaindex_valkey_cache.codec import DecodeError, decode_answer

    with pytest.raises(DecodeError):
        decode_answer({"text": "t", "nodes": [{"class": name, "node": {"text": "x"}}], "metadata": None})
