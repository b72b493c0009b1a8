"""Automatic source capture: the documents a run retrieved become the dependencies of its model calls."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import valkey
from langchain_core.callbacks import BaseCallbackHandler, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.language_models import FakeListChatModel, FakeListLLM
from langchain_core.prompts import ChatPromptTemplate, PromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda, RunnablePassthrough

from langchain_valkey_cache import ValkeyCache
from valkey_rag_cache import Source
from valkey_rag_cache.envelope import decode_body

pytestmark = pytest.mark.standalone

DOCS = [
    Document(
        "Reset it under Settings > Security.",
        id="kb-reset",
        metadata={"topic": "password", "source": "kb/security.md", "content_type": "documentation"},
    ),
    Document(
        "You are billed on the 1st.",
        id="kb-billing",
        metadata={"topic": "billing", "source": "kb/billing.md", "content_type": "static"},
    ),
    Document(
        "Status: all systems normal.",
        id="kb-status",
        metadata={"topic": "status", "source": "status-feed", "content_type": "realtime"},
    ),
]


class TopicRetriever(BaseRetriever):
    """Returns the documents whose topic word appears in the query."""

    docs: list[Document]

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        return [d for d in self.docs if d.metadata["topic"] in query]


def join(docs: list[Document]) -> str:
    return "\n".join(d.page_content for d in docs)


def rag_chain(model: Any, retriever: BaseRetriever | None = None) -> Runnable[Any, Any]:
    retriever = retriever or TopicRetriever(docs=DOCS)
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer from:\n{context}"), ("human", "{question}")]
    )
    return {"context": retriever | join, "question": RunnablePassthrough()} | prompt | model


def text_chain(llm: Any) -> Runnable[Any, Any]:
    prompt = PromptTemplate.from_template("Context:\n{context}\nQuestion: {question}\nAnswer:")
    return {"context": TopicRetriever(docs=DOCS) | join, "question": RunnablePassthrough()} | prompt | llm


@pytest.fixture
def model(cache: ValkeyCache) -> FakeListChatModel:
    return FakeListChatModel(responses=[f"answer {i}" for i in range(50)], cache=cache)


@pytest.fixture
def llm(cache: ValkeyCache) -> FakeListLLM:
    return FakeListLLM(responses=[f"text {i}" for i in range(50)], cache=cache)


def entries(url: str, prefix: str) -> dict[str, Any]:
    """Every live entry under the prefix: key -> (decoded body, ttl)."""
    raw = valkey.Valkey.from_url(url)
    out = {}
    for key in raw.scan_iter(f"{prefix}:*:e:*"):
        body = decode_body(raw.get(key).split(b"\n\n", 1)[1])
        out[key.decode()] = (body, raw.ttl(key))
    return out


def sources_of_entries(url: str, prefix: str) -> list[set[str]]:
    return sorted((set(body.sources) for body, _ in entries(url, prefix).values()), key=sorted)


def test_invoke_records_the_retrieved_documents(
    model: Any, cache: ValkeyCache, standalone_url: str, prefix: str
) -> None:
    chain = rag_chain(model)
    first = chain.invoke("How do I change my password?")
    assert chain.invoke("How do I change my password?").content == first.content
    assert sources_of_entries(standalone_url, prefix) == [{"kb-reset"}]
    assert cache.invalidate_source("kb-reset") == 1
    assert chain.invoke("How do I change my password?").content != first.content


def test_batch_gives_each_item_its_own_sources(model: Any, standalone_url: str, prefix: str) -> None:
    chain = rag_chain(model)
    chain.batch(["password?", "billing?", "status?", "password and billing?"])
    assert sources_of_entries(standalone_url, prefix) == [
        {"kb-billing"},
        {"kb-billing", "kb-reset"},
        {"kb-reset"},
        {"kb-status"},
    ]


async def test_ainvoke_records_the_retrieved_documents(
    model: Any, cache: ValkeyCache, standalone_url: str, prefix: str
) -> None:
    chain = rag_chain(model)
    first = await chain.ainvoke("billing?")
    assert (await chain.ainvoke("billing?")).content == first.content
    assert sources_of_entries(standalone_url, prefix) == [{"kb-billing"}]
    await cache.ainvalidate_source("kb-billing")
    assert (await chain.ainvoke("billing?")).content != first.content


async def test_abatch_gives_each_item_its_own_sources(model: Any, standalone_url: str, prefix: str) -> None:
    chain = rag_chain(model)
    await chain.abatch(["password?", "billing?", "status?", "nothing matches"])
    assert sources_of_entries(standalone_url, prefix) == [set(), {"kb-billing"}, {"kb-reset"}, {"kb-status"}]


async def test_concurrent_ainvokes_do_not_share_sources(model: Any, standalone_url: str, prefix: str) -> None:
    chain = rag_chain(model)
    questions = [f"{topic} #{i}?" for i in range(4) for topic in ("password", "billing", "status")]
    await asyncio.gather(*(chain.ainvoke(q) for q in questions))
    by_topic = {"password": "kb-reset", "billing": "kb-billing", "status": "kb-status"}
    got = sources_of_entries(standalone_url, prefix)
    assert len(got) == 12 and all(len(s) == 1 for s in got)
    assert sorted(next(iter(s)) for s in got) == sorted(by_topic[q.split()[0]] for q in questions)


def test_user_threads_keep_their_own_sources(model: Any, standalone_url: str, prefix: str) -> None:
    chain = rag_chain(model)
    questions = [f"{topic} {i}?" for i in range(5) for topic in ("password", "billing", "status")]
    barrier = threading.Barrier(len(questions))

    def ask(question: str) -> Any:
        barrier.wait()
        return chain.invoke(question)

    threads = [threading.Thread(target=ask, args=(q,)) for q in questions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = sorted(next(iter(s)) for s in sources_of_entries(standalone_url, prefix))
    assert got == sorted(["kb-reset"] * 5 + ["kb-billing"] * 5 + ["kb-status"] * 5)


def test_a_thread_pool_of_invokes_keeps_sources_apart(model: Any, standalone_url: str, prefix: str) -> None:
    chain = rag_chain(model)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(chain.invoke, ["password a?", "billing b?", "status c?", "password d?"]))
    assert sorted(next(iter(s)) for s in sources_of_entries(standalone_url, prefix)) == sorted(
        ["kb-reset", "kb-billing", "kb-status", "kb-reset"]
    )


def test_a_thread_started_inside_a_run_keeps_the_runs_sources(
    model: Any, standalone_url: str, prefix: str
) -> None:
    prompt = ChatPromptTemplate.from_messages([("human", "{context}\n{question}")])

    def answer_in_a_thread(inputs: dict[str, Any], config: RunnableConfig) -> Any:
        # The user's own thread: it does not inherit the context, so the run's config is passed along.
        with ThreadPoolExecutor(1) as pool:
            return pool.submit((prompt | model).invoke, inputs, config).result()

    chain = RunnablePassthrough.assign(
        context=(lambda x: x["question"]) | TopicRetriever(docs=DOCS) | join
    ) | (RunnableLambda(answer_in_a_thread))
    chain.invoke({"question": "status?"})
    assert sources_of_entries(standalone_url, prefix) == [{"kb-status"}]


def test_nested_chains_capture_the_inner_retrieval(model: Any, standalone_url: str, prefix: str) -> None:
    inner = rag_chain(model)
    outer = (
        RunnableLambda(lambda q: q.strip())
        | RunnableLambda(lambda q: inner.invoke(q))
        | RunnableLambda(lambda m: m.content)
    )
    outer.invoke("  status now?  ")
    assert sources_of_entries(standalone_url, prefix) == [{"kb-status"}]


def test_a_retrieval_earlier_in_the_run_counts_for_a_later_model_call(
    model: Any, standalone_url: str, prefix: str
) -> None:
    # Retrieval in the first step, the model two steps later in another sub-chain of the same run.
    retriever = TopicRetriever(docs=DOCS)
    prompt = ChatPromptTemplate.from_messages([("human", "{context}\n{question}")])
    chain = RunnablePassthrough.assign(context=(lambda x: x["question"]) | retriever | join) | (
        prompt | model
    )
    chain.invoke({"question": "billing?"})
    assert sources_of_entries(standalone_url, prefix) == [{"kb-billing"}]


def test_a_model_call_without_retrieval_has_no_sources_and_the_default_ttl(
    model: Any, standalone_url: str, prefix: str
) -> None:
    chain = ChatPromptTemplate.from_messages([("human", "{question}")]) | model
    chain.invoke({"question": "hello?"})
    ((body, ttl),) = entries(standalone_url, prefix).values()
    assert body.sources == ()
    assert body.content_type == "documentation"
    assert 21600 - 60 < ttl <= 21600


def test_a_model_call_after_an_unrelated_run_does_not_inherit_its_sources(
    model: Any, standalone_url: str, prefix: str
) -> None:
    rag_chain(model).invoke("password?")
    model.invoke("a plain question")
    assert sources_of_entries(standalone_url, prefix) == [set(), {"kb-reset"}]


def test_content_types_set_the_ttl(model: Any, standalone_url: str, prefix: str) -> None:
    rag_chain(model).invoke("status and billing?")
    ((body, ttl),) = entries(standalone_url, prefix).values()
    assert body.content_type == "realtime"
    assert 0 < ttl <= 300


def test_config_metadata_source_ids_add_sources(model: Any, standalone_url: str, prefix: str) -> None:
    rag_chain(model).invoke("billing?", config={"metadata": {"source_ids": ["pricing-table", "terms.md"]}})
    model.invoke("direct call", config={"metadata": {"source_ids": ["faq-7"]}})
    assert sources_of_entries(standalone_url, prefix) == [
        {"faq-7"},
        {"kb-billing", "pricing-table", "terms.md"},
    ]


def test_a_sources_scope_attaches_to_calls_outside_a_run(
    model: Any, cache: ValkeyCache, standalone_url: str, prefix: str
) -> None:
    retriever = TopicRetriever(docs=DOCS)
    docs = retriever.invoke("password?")  # a separate top-level call: no shared run with the model
    with cache.sources([d.id for d in docs if d.id], content_type="realtime"):
        first = model.invoke(f"Using {join(docs)}: how do I reset?")
    ((body, ttl),) = entries(standalone_url, prefix).values()
    assert body.sources == ("kb-reset",) and ttl <= 300
    cache.invalidate_source("kb-reset")
    assert model.invoke(f"Using {join(docs)}: how do I reset?").content != first.content


async def test_a_sources_scope_works_in_async_code(
    model: Any, cache: ValkeyCache, standalone_url: str, prefix: str
) -> None:
    async with cache.sources(["async-doc"]):
        await model.ainvoke("q?")
    assert sources_of_entries(standalone_url, prefix) == [{"async-doc"}]


def test_source_id_key_reads_the_metadata(model: Any, standalone_url: str, prefix: str) -> None:
    cache = ValkeyCache(standalone_url, prefix=prefix, source_id_key="source")
    chain = rag_chain(FakeListChatModel(responses=["x"], cache=cache))
    chain.invoke("password and status?")
    assert sources_of_entries(standalone_url, prefix) == [{"kb/security.md", "status-feed"}]


def test_a_document_without_an_id_falls_back_to_its_source(
    model: Any, standalone_url: str, prefix: str
) -> None:
    docs = [Document("Refunds within 30 days.", metadata={"topic": "refund", "source": "kb/refunds.md"})]
    rag_chain(model, TopicRetriever(docs=docs)).invoke("refund?")
    assert sources_of_entries(standalone_url, prefix) == [{"kb/refunds.md"}]


def test_text_model_batch_gives_each_prompt_its_own_sources(
    llm: Any, cache: ValkeyCache, standalone_url: str, prefix: str
) -> None:
    chain = text_chain(llm)
    first = chain.batch(["password?", "billing?", "status?"])
    assert chain.batch(["password?", "billing?", "status?"]) == first
    assert sources_of_entries(standalone_url, prefix) == [{"kb-billing"}, {"kb-reset"}, {"kb-status"}]
    cache.invalidate_source("kb-billing")
    again = chain.batch(["password?", "billing?", "status?"])
    assert again[0] == first[0] and again[2] == first[2] and again[1] != first[1]


async def test_text_model_abatch_gives_each_prompt_its_own_sources(
    llm: Any, standalone_url: str, prefix: str
) -> None:
    chain = text_chain(llm)
    await chain.abatch(["password?", "billing?"])
    await chain.ainvoke("status?")
    assert sources_of_entries(standalone_url, prefix) == [{"kb-billing"}, {"kb-reset"}, {"kb-status"}]


class Invalidating(BaseCallbackHandler):
    """Runs an invalidation when the text model starts: after the batch's lookups, before its updates."""

    def __init__(self, invalidate: Any) -> None:
        self.invalidate = invalidate

    def on_llm_start(self, serialized: Any, prompts: list[str], **kwargs: Any) -> None:
        self.invalidate()


class FailingOnceLLM(FakeListLLM):
    """A text model whose first call fails."""

    failed: bool = False

    def _call(self, prompt: str, *args: Any, **kwargs: Any) -> str:
        if not self.failed:
            self.failed = True
            raise RuntimeError("the model went away")
        return super()._call(prompt, *args, **kwargs)


def test_the_same_prompt_twice_in_a_text_batch_keeps_its_sources_and_ttl(
    llm: Any, cache: ValkeyCache, standalone_url: str, prefix: str
) -> None:
    # Both items retrieve the realtime status document; both updates write one entry, and the second
    # must not overwrite it without its dependency (nor with the default 6 h TTL).
    chain = text_chain(llm)
    first = chain.batch(["status?", "status?"])
    ((body, ttl),) = entries(standalone_url, prefix).values()
    assert body.sources == ("kb-status",)
    assert body.content_type == "realtime" and 0 < ttl <= 300
    assert cache.invalidate_source("kb-status") == 1
    assert chain.invoke("status?") != first[0]


async def test_the_same_prompt_twice_in_a_text_abatch_keeps_its_metadata_sources(
    llm: Any, cache: ValkeyCache, standalone_url: str, prefix: str
) -> None:
    await llm.abatch(
        ["price of ACME?"] * 3, config={"metadata": {"source_ids": [Source("quotes/acme", "realtime")]}}
    )
    ((body, ttl),) = entries(standalone_url, prefix).values()
    assert body.sources == ("quotes/acme",) and 0 < ttl <= 300


def test_every_update_of_a_repeated_prompt_is_race_checked(
    llm: Any, cache: ValkeyCache, standalone_url: str, prefix: str
) -> None:
    # The document changes after the batch looked its prompts up: none of the answers may be stored.
    config: RunnableConfig = {
        "metadata": {"source_ids": ["doc-1"]},
        "callbacks": [Invalidating(lambda: cache.invalidate_source("doc-1"))],
    }
    llm.batch(["what does doc-1 say?"] * 2, config=config)
    assert entries(standalone_url, prefix) == {}
    assert cache.stats()["totals"]["refused"] == 2


def test_a_repeated_prompt_without_sources_is_race_checked_too(
    llm: Any, cache: ValkeyCache, standalone_url: str, prefix: str
) -> None:
    llm.batch(["hello?"] * 2, config={"callbacks": [Invalidating(cache.invalidate_namespace)]})
    assert entries(standalone_url, prefix) == {}
    assert cache.stats()["totals"]["refused"] == 2


def test_a_failed_text_model_call_leaves_no_sources_behind(
    cache: ValkeyCache, standalone_url: str, prefix: str
) -> None:
    llm = FailingOnceLLM(responses=["fine"], cache=cache)
    with pytest.raises(RuntimeError):
        llm.invoke("q?", config={"metadata": {"source_ids": ["from-the-failed-run"]}})
    assert llm.invoke("q?") == "fine"
    assert sources_of_entries(standalone_url, prefix) == [set()]
