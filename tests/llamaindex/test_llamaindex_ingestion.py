"""Ingestion hooks: IngestionPipeline strategies and VectorStoreIndex updates invalidate dependents.

Every test caches answers for all four documents first, changes or deletes some documents through plain
LlamaIndex calls, and checks that exactly their answers are recomputed while the others stay cached.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from llama_index.core import Document, Settings, StorageContext, SummaryIndex, VectorStoreIndex
from llama_index.core.ingestion import DocstoreStrategy, IngestionPipeline
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.storage.docstore import SimpleDocumentStore
from llama_index.core.vector_stores import SimpleVectorStore

from llamaindex_support import (
    DOCS,
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

pytestmark = pytest.mark.standalone

QUERIES = {
    "billing.md": "How does billing and a refund work?",
    "password.md": "How do I reset my password at login?",
    "shipping.md": "When does my parcel shipping arrive?",
    "warranty.md": "Does the warranty cover repair?",
}


def ask_all(engine: Any) -> dict[str, str]:
    return {doc: str(engine.query(q)) for doc, q in QUERIES.items()}


def recomputed(before: int, llm: CountingLLM) -> int:
    return llm.calls - before


class Pipeline:
    """An IngestionPipeline into a vector store and docstore wrapped as the test asks, plus a query engine."""

    def __init__(self, cache: LlamaIndexCache, strategy: DocstoreStrategy, wrap: str) -> None:
        self.cache = cache
        store = TextVectorStore()
        docstore = SimpleDocumentStore()
        self.vector_store = (
            InvalidatingPydanticVectorStore(store, cache) if wrap in ("vector", "both") else store
        )
        self.docstore = InvalidatingDocstore(docstore, cache) if wrap in ("docstore", "both") else docstore
        self.pipeline = IngestionPipeline(
            transformations=[SentenceSplitter(chunk_size=256, chunk_overlap=0), Settings.embed_model],
            docstore=self.docstore,
            vector_store=self.vector_store,
            docstore_strategy=strategy,
        )
        self.index = VectorStoreIndex.from_vector_store(self.vector_store)

    def engine(self) -> CachedQueryEngine:
        return CachedQueryEngine(self.index.as_query_engine(similarity_top_k=1), cache=self.cache)


WRAPS = ["vector", "docstore", "both"]


@pytest.mark.parametrize("wrap", WRAPS)
@pytest.mark.parametrize("strategy", [DocstoreStrategy.UPSERTS, DocstoreStrategy.UPSERTS_AND_DELETE])
def test_pipeline_run_invalidates_changed_documents(
    settings: Any, cache: LlamaIndexCache, strategy: DocstoreStrategy, wrap: str
) -> None:
    _, llm = settings
    p = Pipeline(cache, strategy, wrap)
    p.pipeline.run(documents=documents())
    first = ask_all(p.engine())
    before = llm.calls
    p.pipeline.run(documents=documents())  # unchanged: nothing is invalidated
    assert ask_all(p.engine()) == first and recomputed(before, llm) == 0
    p.pipeline.run(documents=documents(billing_md="Billing happens weekly now; a refund takes a day."))
    after = ask_all(p.engine())
    assert recomputed(before, llm) == 1
    assert after["billing.md"] != first["billing.md"]
    assert {d: after[d] for d in DOCS if d != "billing.md"} == {
        d: first[d] for d in DOCS if d != "billing.md"
    }


@pytest.mark.parametrize("wrap", WRAPS)
async def test_pipeline_arun_invalidates_changed_and_deleted_documents(
    settings: Any, cache: LlamaIndexCache, wrap: str
) -> None:
    _, llm = settings
    p = Pipeline(cache, DocstoreStrategy.UPSERTS_AND_DELETE, wrap)
    await p.pipeline.arun(documents=documents())
    engine = p.engine()
    first = {doc: str(await engine.aquery(q)) for doc, q in QUERIES.items()}
    before = llm.calls
    changed = [
        d for d in documents(password_md="Passwords are reset by support only.") if d.id_ != "warranty.md"
    ]
    await p.pipeline.arun(documents=changed)  # password changed, warranty gone
    assert cache.dependents("password.md") == [] and cache.dependents("warranty.md") == []
    after = {doc: str(await engine.aquery(q)) for doc, q in QUERIES.items()}
    assert recomputed(before, llm) == 2
    assert after["billing.md"] == first["billing.md"] and after["shipping.md"] == first["shipping.md"]
    assert after["password.md"] != first["password.md"]


class SlowDeleteStore(TextVectorStore):
    """Runs a query just before it deletes: a user's request landing in the middle of an ingestion run."""

    before_delete: Any = None

    def delete(self, ref_doc_id: str, **kwargs: Any) -> None:
        if self.before_delete is not None:
            self.before_delete()
        super().delete(ref_doc_id, **kwargs)


@pytest.mark.parametrize("wrap", WRAPS)
def test_an_answer_computed_mid_ingestion_does_not_outlive_the_run(
    settings: Any, cache: LlamaIndexCache, wrap: str
) -> None:
    _, llm = settings
    p = Pipeline(cache, DocstoreStrategy.UPSERTS, wrap)
    store = SlowDeleteStore()
    p.vector_store = InvalidatingPydanticVectorStore(store, cache) if wrap != "docstore" else store
    p.pipeline.vector_store = p.vector_store
    p.index = VectorStoreIndex.from_vector_store(p.vector_store)
    p.pipeline.run(documents=documents())
    old = str(p.engine().query(QUERIES["billing.md"]))
    mid_run: list[str] = []
    store.before_delete = lambda: mid_run.append(str(p.engine().query("Billing: how does a refund work?")))
    p.pipeline.run(documents=documents(billing_md="Billing happens weekly now; a refund takes a day."))
    store.before_delete = None
    assert len(mid_run) == 1  # computed from the old billing text, after the first invalidation
    calls = llm.calls
    assert str(p.engine().query("Billing: how does a refund work?")) != mid_run[0]
    assert str(p.engine().query(QUERIES["billing.md"])) != old
    assert llm.calls == calls + 2


def test_pipeline_upserts_and_delete_invalidates_a_removed_document(
    settings: Any, cache: LlamaIndexCache
) -> None:
    _, llm = settings
    p = Pipeline(cache, DocstoreStrategy.UPSERTS_AND_DELETE, "docstore")
    p.pipeline.run(documents=documents())
    ask_all(p.engine())
    assert len(cache.dependents("shipping.md")) == 1
    p.pipeline.run(documents=[d for d in documents() if d.id_ != "shipping.md"])
    assert cache.dependents("shipping.md") == []
    assert all(len(cache.dependents(d)) == 1 for d in DOCS if d != "shipping.md")


@pytest.mark.parametrize("wrap", WRAPS)
def test_index_refresh_update_and_delete_ref_doc(settings: Any, cache: LlamaIndexCache, wrap: str) -> None:
    _, llm = settings
    store, docstore = SimpleVectorStore(), SimpleDocumentStore()
    storage = StorageContext.from_defaults(
        vector_store=InvalidatingPydanticVectorStore(store, cache) if wrap in ("vector", "both") else store,
        docstore=InvalidatingDocstore(docstore, cache) if wrap in ("docstore", "both") else docstore,
    )
    index = VectorStoreIndex.from_documents(documents(), storage_context=storage)

    def engine() -> CachedQueryEngine:
        # A retriever made before a refresh can miss new nodes: build the engine again, as LlamaIndex advises.
        return CachedQueryEngine(index.as_query_engine(similarity_top_k=1), cache=cache)

    first = ask_all(engine())
    before = llm.calls
    refreshed = index.refresh_ref_docs(documents(billing_md="Billing is yearly; a refund takes a week."))
    assert refreshed == [True, False, False, False]
    assert cache.dependents("billing.md") == []
    index.update_ref_doc(documents(shipping_md="Shipping a parcel now takes one day.")[2])
    assert cache.dependents("shipping.md") == []
    if wrap == "docstore":
        index.delete_ref_doc("warranty.md", delete_from_docstore=True)  # the docstore only sees this form
    else:
        index.delete_ref_doc("warranty.md")
    assert cache.dependents("warranty.md") == []
    after = ask_all(engine())
    assert recomputed(before, llm) == 3
    assert after["password.md"] == first["password.md"]
    assert after["billing.md"] != first["billing.md"] and after["shipping.md"] != first["shipping.md"]


async def test_index_async_refresh_and_delete(settings: Any, cache: LlamaIndexCache) -> None:
    index = build_index(cache)
    engine = CachedQueryEngine(index.as_query_engine(similarity_top_k=1), cache=cache)
    for q in QUERIES.values():
        await engine.aquery(q)
    await index.arefresh_ref_docs(documents(password_md="Password resets need two factors."))
    await index.adelete_ref_doc("billing.md", delete_from_docstore=True)
    assert cache.dependents("password.md") == [] and cache.dependents("billing.md") == []
    assert len(cache.dependents("shipping.md")) == 1 and len(cache.dependents("warranty.md")) == 1


def test_docstore_backed_index_invalidates_through_the_docstore(
    settings: Any, cache: LlamaIndexCache
) -> None:
    """A SummaryIndex reads nodes from the docstore only: the docstore hook is the one that sees changes."""
    _, llm = settings
    Settings.llm = CachedLLM(llm=llm, cache=cache)
    storage = StorageContext.from_defaults(docstore=InvalidatingDocstore(SimpleDocumentStore(), cache))
    docs = [d for d in documents() if d.id_ in ("billing.md", "password.md")]
    index = SummaryIndex.from_documents(docs, storage_context=storage)
    index.as_query_engine().query("Summarize billing and password help.")
    assert len(cache.dependents("billing.md")) == 1
    index.refresh_ref_docs([Document(text="Billing changed.", id_="billing.md"), docs[1]])
    assert cache.dependents("billing.md") == [] and cache.dependents("password.md") == []


def test_vector_store_wrapper_passes_everything_else_through(settings: Any, cache: LlamaIndexCache) -> None:
    store = SimpleVectorStore()
    wrapped = InvalidatingPydanticVectorStore(store, cache)
    assert wrapped.stores_text is store.stores_text and wrapped.client is store.client
    index = VectorStoreIndex.from_documents(
        documents(), storage_context=StorageContext.from_defaults(vector_store=wrapped)
    )
    node_id = next(iter(store.data.embedding_dict))
    assert wrapped.get(node_id) == store.get(node_id)  # a SimpleVectorStore method, through the wrapper
    assert wrapped.data is store.data
    assert [
        n.node.ref_doc_id for n in index.as_retriever(similarity_top_k=1).retrieve(QUERIES["warranty.md"])
    ] == ["warranty.md"]


def test_deleting_nodes_invalidates_their_documents(settings: Any, cache: LlamaIndexCache) -> None:
    _, llm = settings
    store = SimpleVectorStore()
    index = VectorStoreIndex.from_documents(
        documents(),
        storage_context=StorageContext.from_defaults(
            vector_store=InvalidatingPydanticVectorStore(store, cache)
        ),
    )
    ask_all(CachedQueryEngine(index.as_query_engine(similarity_top_k=1), cache=cache))
    shipping_nodes = [n for n, d in store.data.text_id_to_ref_doc_id.items() if d == "shipping.md"]
    index.delete_nodes(shipping_nodes)
    assert cache.dependents("shipping.md") == []
    assert len(cache.dependents("billing.md")) == 1


def test_end_to_end_reingesting_a_changed_document(settings: Any, cache: LlamaIndexCache) -> None:
    """Settings.llm = CachedLLM, a query-engine cache on top, and a pipeline re-run with one changed file."""
    _, inner = settings
    Settings.llm = CachedLLM(llm=inner, cache=cache)
    p = Pipeline(cache, DocstoreStrategy.UPSERTS, "both")
    p.pipeline.run(documents=documents())
    llm_engine = p.index.as_query_engine(similarity_top_k=1)  # LLM cache only
    answer_engine = p.engine()  # whole-answer cache
    first_llm = ask_all(llm_engine)
    first_answers = ask_all(answer_engine)
    assert inner.calls == 4  # the answer cache's misses were LLM-cache hits
    assert ask_all(llm_engine) == first_llm and ask_all(answer_engine) == first_answers and inner.calls == 4
    p.pipeline.run(documents=documents(warranty_md="The warranty covers repair for five years."))
    second_llm = ask_all(llm_engine)
    second_answers = ask_all(answer_engine)
    assert inner.calls == 5  # only the warranty answer was recomputed, once, for both caches
    assert second_llm["warranty.md"] != first_llm["warranty.md"]
    assert second_answers["warranty.md"] == second_llm["warranty.md"]
    for doc in ("billing.md", "password.md", "shipping.md"):
        assert second_llm[doc] == first_llm[doc] and second_answers[doc] == first_answers[doc]


def test_wrapped_stores_persist_and_reload(settings: Any, cache: LlamaIndexCache, tmp_path: Any) -> None:
    from llama_index.core import load_index_from_storage

    index = build_index(cache)
    index.storage_context.persist(persist_dir=str(tmp_path))
    loaded = StorageContext.from_defaults(persist_dir=str(tmp_path))
    storage = StorageContext.from_defaults(
        persist_dir=str(tmp_path),
        docstore=InvalidatingDocstore(loaded.docstore, cache),
        vector_store=InvalidatingPydanticVectorStore(loaded.vector_store, cache),
    )
    reloaded = load_index_from_storage(storage)
    engine = CachedQueryEngine(reloaded.as_query_engine(similarity_top_k=1), cache=cache)
    engine.query(QUERIES["password.md"])
    assert len(cache.dependents("password.md")) == 1
    reloaded.delete_ref_doc("password.md")
    assert cache.dependents("password.md") == []


@pytest.mark.parametrize("asynchronous", [False, True])
def test_docstore_wrapper_alone_leaves_no_answer_on_a_deleted_document(
    settings: Any, cache: LlamaIndexCache, asynchronous: bool
) -> None:
    """UPSERTS_AND_DELETE deletes from the docstore, then from the vector store: a query in between retrieves
    the deleted document, and its answer must not be served once the run returned."""
    p = Pipeline(cache, DocstoreStrategy.UPSERTS_AND_DELETE, "docstore")
    store = SlowDeleteStore()
    p.vector_store = p.pipeline.vector_store = store
    p.index = VectorStoreIndex.from_vector_store(store)
    p.pipeline.run(documents=documents())
    mid_run: list[Any] = []
    store.before_delete = lambda: mid_run.append(p.engine().query(QUERIES["shipping.md"]))
    remaining = [d for d in documents() if d.id_ != "shipping.md"]
    if asynchronous:
        asyncio.run(p.pipeline.arun(documents=remaining))
    else:
        p.pipeline.run(documents=remaining)
    store.before_delete = None
    assert [n.node.ref_doc_id for n in mid_run[0].source_nodes] == ["shipping.md"]  # the old document
    assert cache.dependents("shipping.md") == []
    after = p.engine().query(QUERIES["shipping.md"])
    assert "shipping.md" not in [n.node.ref_doc_id for n in after.source_nodes]
