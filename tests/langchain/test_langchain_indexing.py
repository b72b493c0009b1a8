"""InvalidatingVectorStore under LangChain's indexing API, and an end-to-end RAG chain on a real Valkey."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.indexing import InMemoryRecordManager, aindex, index
from langchain_core.language_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import Generation
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnablePassthrough
from langchain_core.vectorstores import InMemoryVectorStore, VectorStore
from pydantic import Field

from langchain_valkey_cache import CachedRunnable, InvalidatingVectorStore, ValkeyCache
from valkey_rag_cache import InvalidationError

pytestmark = pytest.mark.standalone


def kb(password_text: str = "Reset your password under Settings > Security.") -> list[Document]:
    return [
        Document(password_text, metadata={"source": "kb/password.md", "topic": "password"}),
        Document(
            "Invoices are sent on the 1st of each month.",
            metadata={"source": "kb/billing.md", "topic": "billing"},
        ),
        Document("Support is open 9-17 CET.", metadata={"source": "kb/hours.md", "topic": "hours"}),
    ]


class TopicRetriever(BaseRetriever):
    """Searches a vector store, keeping the documents whose topic word appears in the question."""

    store: VectorStore
    queries: list[str] = Field(default_factory=list)

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        self.queries.append(query)
        return self.store.similarity_search(query, k=2, filter=lambda d: d.metadata["topic"] in query)


def join(docs: list[Document]) -> str:
    return "\n".join(d.page_content for d in docs)


def rag_chain(retriever: BaseRetriever, model: Any) -> Runnable[Any, Any]:
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer from:\n{context}"), ("human", "{question}")]
    )
    return (
        {"context": retriever | join, "question": RunnablePassthrough()} | prompt | model | StrOutputParser()
    )


@pytest.fixture
def cache_namespace() -> str:
    return "support"


@pytest.fixture
def store(cache: ValkeyCache) -> InvalidatingVectorStore:
    return InvalidatingVectorStore(InMemoryVectorStore(DeterministicFakeEmbedding(size=16)), cache)


@pytest.fixture
def records(prefix: str) -> InMemoryRecordManager:
    manager = InMemoryRecordManager(namespace=f"kb-{prefix}")
    manager.create_schema()
    return manager


def test_index_accepts_the_wrapper(store: InvalidatingVectorStore, records: InMemoryRecordManager) -> None:
    result = index(kb(), records, store, cleanup="incremental", source_id_key="source", key_encoder="sha256")
    assert result["num_added"] == 3
    assert len(store.vector_store.store) == 3  # type: ignore[attr-defined]
    again = index(kb(), records, store, cleanup="incremental", source_id_key="source", key_encoder="sha256")
    assert again["num_skipped"] == 3 and again["num_added"] == 0


def test_end_to_end_a_document_update_recomputes_only_its_answers(
    cache: ValkeyCache, store: InvalidatingVectorStore, records: InMemoryRecordManager
) -> None:
    index(kb(), records, store, cleanup="incremental", source_id_key="source", key_encoder="sha256")
    retriever = TopicRetriever(store=store)
    model = FakeListChatModel(responses=[f"answer {i}" for i in range(20)], cache=cache)
    rag = CachedRunnable(rag_chain(retriever, model), cache=cache, key="support:v1")

    password, billing, hours = rag.invoke("password?"), rag.invoke("billing?"), rag.invoke("hours?")
    assert [rag.invoke("password?"), rag.invoke("billing?"), rag.invoke("hours?")] == [
        password,
        billing,
        hours,
    ]
    assert len(retriever.queries) == 3

    result = index(
        kb("Passwords are reset from the login page now."),
        records,
        store,
        cleanup="incremental",
        source_id_key="source",
        key_encoder="sha256",
    )
    assert (result["num_added"], result["num_deleted"]) == (1, 1)

    new_password = rag.invoke("password?")
    assert new_password != password  # recomputed from the changed document
    assert len(retriever.queries) == 4
    assert [rag.invoke("billing?"), rag.invoke("hours?")] == [billing, hours]  # unrelated: still cached
    assert rag.invoke("password?") == new_password
    assert len(retriever.queries) == 4


def test_the_model_level_cache_follows_the_index_too(
    cache: ValkeyCache, store: InvalidatingVectorStore, records: InMemoryRecordManager
) -> None:
    index(kb(), records, store, cleanup="incremental", source_id_key="source", key_encoder="sha256")
    model = FakeListChatModel(responses=[f"answer {i}" for i in range(20)], cache=cache)
    chain = rag_chain(TopicRetriever(store=store), model)
    chain.invoke("password?")
    chain.invoke("billing?")
    ids = {d["metadata"]["topic"]: d["id"] for d in store.vector_store.store.values()}  # type: ignore[attr-defined]
    # By default the cache records Document.id: here the hashed id index() gave each document.
    assert len(cache.dependents(ids["password"])) == 1 and len(cache.dependents(ids["billing"])) == 1
    index(
        kb("Passwords are reset by email."),
        records,
        store,
        cleanup="incremental",
        source_id_key="source",
        key_encoder="sha256",
    )
    assert cache.dependents(ids["password"]) == []  # the old version's answer is gone
    assert len(cache.dependents(ids["billing"])) == 1


def test_cleanup_of_a_removed_document_invalidates_by_source(
    standalone_url: str, prefix: str, records: InMemoryRecordManager
) -> None:
    cache = ValkeyCache(standalone_url, prefix=prefix, source_id_key="source")
    store = InvalidatingVectorStore(InMemoryVectorStore(DeterministicFakeEmbedding(size=16)), cache)
    index(kb(), records, store, cleanup="full", source_id_key="source", key_encoder="sha256")
    model = FakeListChatModel(responses=[f"answer {i}" for i in range(20)], cache=cache)
    chain = rag_chain(TopicRetriever(store=store), model)
    hours = chain.invoke("hours?")
    billing = chain.invoke("billing?")
    assert len(cache.dependents("kb/hours.md")) == 1
    result = index(kb()[:2], records, store, cleanup="full", source_id_key="source", key_encoder="sha256")
    assert result["num_deleted"] == 1
    assert cache.dependents("kb/hours.md") == []
    assert chain.invoke("billing?") == billing
    assert chain.invoke("hours?") != hours


def test_an_invalidation_that_fails_makes_index_retry_the_batch(
    cache: ValkeyCache, records: InMemoryRecordManager
) -> None:
    inner = InMemoryVectorStore(DeterministicFakeEmbedding(size=16))
    down = InvalidatingVectorStore(inner, ValkeyCache("valkey://127.0.0.1:1", timeout=0.2))
    with pytest.raises(InvalidationError):
        index(kb(), records, down, cleanup="incremental", source_id_key="source", key_encoder="sha256")
    with cache.sources(["kb/billing.md"]):
        cache.update("p", "l", [Generation(text="built on the old billing page")])
    # Valkey is back: the batch index() did not record is written and invalidated again.
    up = InvalidatingVectorStore(inner, cache)
    result = index(kb(), records, up, cleanup="incremental", source_id_key="source", key_encoder="sha256")
    assert result["num_added"] == 3
    assert cache.lookup("p", "l") is None


def test_delete_reads_sources_it_did_not_see_added(cache: ValkeyCache) -> None:
    inner = InMemoryVectorStore(DeterministicFakeEmbedding(size=16))
    (doc_id,) = inner.add_documents([Document("old", metadata={"source": "kb/x.md"})])
    with cache.sources(["kb/x.md"]):
        cache.update("p", "l", [Generation(text="x")])
    store = InvalidatingVectorStore(inner, cache)  # a fresh wrapper: it knows nothing about doc_id
    store.delete([doc_id])
    assert cache.lookup("p", "l") is None


def test_adding_a_document_invalidates_answers_on_its_source(
    cache: ValkeyCache, store: InvalidatingVectorStore
) -> None:
    with cache.sources(["kb/new.md"]):
        cache.update("p", "l", [Generation(text="x")])
    assert cache.lookup("p", "l") == [Generation(text="x")]
    store.add_documents([Document("more about it", metadata={"source": "kb/new.md"})])
    assert cache.lookup("p", "l") is None


def test_delete_without_ids_invalidates_everything(
    cache: ValkeyCache, store: InvalidatingVectorStore
) -> None:
    store.add_texts(["a", "b"], metadatas=[{"source": "a"}, {"source": "b"}])
    cache.update("p", "l", [Generation(text="x")])
    store.delete()
    assert cache.lookup("p", "l") is None


def test_reads_are_the_wrapped_stores(store: InvalidatingVectorStore) -> None:
    ids = store.add_texts(["alpha", "beta"], metadatas=[{"source": "a"}, {"source": "b"}])
    assert [d.page_content for d in store.get_by_ids(ids)] == ["alpha", "beta"]
    assert store.similarity_search("alpha", k=1)[0].page_content == "alpha"
    assert store.as_retriever(search_kwargs={"k": 1}).invoke("beta")[0].page_content == "beta"
    assert store.embeddings is store.vector_store.embeddings


async def test_aindex_invalidates_changed_documents(
    cache: ValkeyCache, store: InvalidatingVectorStore, records: InMemoryRecordManager
) -> None:
    await aindex(kb(), records, store, cleanup="incremental", source_id_key="source", key_encoder="sha256")
    retriever = TopicRetriever(store=store)
    rag = CachedRunnable(rag_chain(retriever, FakeListChatModel(responses=["v1", "v2", "v3"])), cache=cache)
    first = await rag.ainvoke("password?")
    assert await rag.ainvoke("password?") == first
    await aindex(
        kb("New reset flow."),
        records,
        store,
        cleanup="incremental",
        source_id_key="source",
        key_encoder="sha256",
    )
    assert await rag.ainvoke("password?") != first


@pytest.mark.cluster
def test_end_to_end_on_a_cluster(cluster_url: str, prefix: str, records: InMemoryRecordManager) -> None:
    cache = ValkeyCache(cluster_url, prefix=prefix, namespace="tenant-c:support")
    store = InvalidatingVectorStore(InMemoryVectorStore(DeterministicFakeEmbedding(size=16)), cache)
    index(kb(), records, store, cleanup="incremental", source_id_key="source", key_encoder="sha256")
    rag = CachedRunnable(
        rag_chain(TopicRetriever(store=store), FakeListChatModel(responses=[f"a{i}" for i in range(9)])),
        cache=cache,
    )
    password, billing = rag.invoke("password?"), rag.invoke("billing?")
    index(kb("Changed."), records, store, cleanup="incremental", source_id_key="source", key_encoder="sha256")
    assert rag.invoke("password?") != password
    assert rag.invoke("billing?") == billing


def test_deleting_many_documents_at_once_invalidates_every_answer_on_them(
    cache: ValkeyCache, store: InvalidatingVectorStore
) -> None:
    # More ids and sources than the core puts in one invalidation script: the wrapper hands them all over.
    n = 1_500
    ids = store.add_texts(
        [f"text {i}" for i in range(n)], metadatas=[{"source": f"kb/{i}.md"} for i in range(n)]
    )
    on = {
        "first-id": ids[0],
        "last-id": ids[-1],
        "middle-source": f"kb/{n // 2}.md",
        "last-source": f"kb/{n - 1}.md",
    }
    for name, source in on.items():
        with cache.sources([source]):
            cache.update(name, "l", [Generation(text=name)])
    cache.update("unrelated", "l", [Generation(text="stays")])
    store.delete(ids)
    assert [cache.lookup(name, "l") for name in on] == [None] * len(on)
    assert cache.lookup("unrelated", "l") == [Generation(text="stays")]


async def test_adeleting_many_documents_at_once_invalidates_every_answer_on_them(
    cache: ValkeyCache, store: InvalidatingVectorStore
) -> None:
    n = 1_200
    ids = await store.aadd_texts(
        [f"t{i}" for i in range(n)], metadatas=[{"source": f"s{i}"} for i in range(n)]
    )
    with cache.sources([f"s{n - 1}"]):  # the last source of the batch
        await cache.aupdate("p", "l", [Generation(text="x")])
    await store.adelete(ids)
    assert await cache.alookup("p", "l") is None
