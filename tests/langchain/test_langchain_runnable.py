"""CachedRunnable: a whole-chain answer cache whose entries depend on the documents the chain retrieved."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import valkey
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.language_models import FakeListChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import (
    ConfigurableField,
    Runnable,
    RunnableLambda,
    RunnableParallel,
    RunnablePassthrough,
)
from pydantic import Field

from langchain_valkey_cache import CachedRunnable, ValkeyCache
from langchain_valkey_cache.runnable import decode_output
from valkey_rag_cache import AnswerCache, DecodeError

pytestmark = pytest.mark.standalone

DOCS = [
    Document("Reset it under Settings > Security.", id="kb-reset", metadata={"topic": "password"}),
    Document("You are billed on the 1st.", id="kb-billing", metadata={"topic": "billing"}),
]


class CountingRetriever(BaseRetriever):
    """Returns the documents whose topic appears in the query, and counts its calls."""

    docs: list[Document]
    queries: list[str] = Field(default_factory=list)
    on_call: Any = None

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        self.queries.append(query)
        if self.on_call is not None:
            self.on_call(query)
        return [d for d in self.docs if d.metadata["topic"] in query]


def join(docs: list[Document]) -> str:
    return "\n".join(d.page_content for d in docs)


def make_chain(retriever: BaseRetriever, model: Any, parse: bool = True) -> Runnable[Any, Any]:
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer from:\n{context}"), ("human", "{question}")]
    )
    chain = {"context": retriever | join, "question": RunnablePassthrough()} | prompt | model
    return chain | StrOutputParser() if parse else chain


@pytest.fixture
def cache_namespace() -> str:
    return "answers"


@pytest.fixture
def retriever() -> CountingRetriever:
    return CountingRetriever(docs=DOCS)


@pytest.fixture
def model() -> FakeListChatModel:
    return FakeListChatModel(responses=[f"answer number {i}" for i in range(50)])


@pytest.fixture
def rag(
    retriever: CountingRetriever, model: FakeListChatModel, cache: ValkeyCache
) -> CachedRunnable[Any, Any]:
    return CachedRunnable(make_chain(retriever, model), cache=cache, key="support-bot:v1")


def entry_count(url: str, prefix: str) -> int:
    return sum(1 for _ in valkey.Valkey.from_url(url).scan_iter(f"{prefix}:*:e:*"))


def test_a_hit_skips_retrieval_and_the_model(rag: Any, retriever: CountingRetriever, model: Any) -> None:
    first = rag.invoke("password?")
    assert rag.invoke("password?") == first
    assert len(retriever.queries) == 1 and model.i == 1


def test_the_entry_depends_on_the_retrieved_documents(rag: Any, cache: ValkeyCache, retriever: Any) -> None:
    password, billing = rag.invoke("password?"), rag.invoke("billing?")
    assert len(cache.dependents("kb-reset")) == 1
    assert cache.invalidate_source("kb-reset") == 1
    assert rag.invoke("password?") != password  # recomputed
    assert rag.invoke("billing?") == billing  # untouched
    assert len(retriever.queries) == 3


async def test_ainvoke_hits_and_invalidates(rag: Any, cache: ValkeyCache, retriever: Any) -> None:
    first = await rag.ainvoke("billing?")
    assert await rag.ainvoke("billing?") == first
    assert len(retriever.queries) == 1
    await cache.ainvalidate_source("kb-billing")
    assert await rag.ainvoke("billing?") != first


def test_batch_caches_each_item_with_its_own_sources(rag: Any, cache: ValkeyCache, retriever: Any) -> None:
    first = rag.batch(["password?", "billing?", "nothing?"])
    assert rag.batch(["password?", "billing?", "nothing?"]) == first
    assert len(retriever.queries) == 3
    assert len(cache.dependents("kb-reset")) == 1 and len(cache.dependents("kb-billing")) == 1
    assert cache.dependents("kb-reset") != cache.dependents("kb-billing")


async def test_abatch_caches_each_item_with_its_own_sources(
    rag: Any, cache: ValkeyCache, retriever: Any
) -> None:
    first = await rag.abatch(["password?", "billing?"])
    assert await rag.abatch(["password?", "billing?"]) == first
    assert len(retriever.queries) == 2
    assert cache.dependents("kb-reset") != cache.dependents("kb-billing")


def test_a_stream_is_replayed_on_a_hit(rag: Any, retriever: Any) -> None:
    chunks = list(rag.stream("password?"))
    assert len(chunks) > 1
    assert list(rag.stream("password?")) == chunks
    assert rag.invoke("password?") == "".join(chunks)
    assert len(retriever.queries) == 1


def test_a_stream_after_an_invoke_replays_the_answer(rag: Any, retriever: Any) -> None:
    answer = rag.invoke("billing?")
    assert "".join(rag.stream("billing?")) == answer
    assert len(retriever.queries) == 1


def test_an_abandoned_stream_is_never_stored(
    rag: Any, retriever: Any, standalone_url: str, prefix: str
) -> None:
    stream = rag.stream("password?")
    next(stream)
    stream.close()
    assert entry_count(standalone_url, prefix) == 0
    rag.invoke("password?")
    assert len(retriever.queries) == 2


def test_a_failing_chain_is_never_stored(
    cache: ValkeyCache, retriever: Any, standalone_url: str, prefix: str
) -> None:
    def explode(_: Any) -> Iterator[str]:
        yield "partial "
        raise RuntimeError("model went away")

    rag = CachedRunnable(make_chain(retriever, FakeListChatModel(responses=["x"])) | explode, cache=cache)
    with pytest.raises(RuntimeError):
        list(rag.stream("password?"))
    with pytest.raises(RuntimeError):
        rag.invoke("password?")
    assert entry_count(standalone_url, prefix) == 0


async def test_astream_is_replayed_and_an_abandoned_one_is_not_stored(
    rag: Any, retriever: Any, standalone_url: str, prefix: str
) -> None:
    aborted = rag.astream("billing?")
    await aborted.__anext__()
    await aborted.aclose()
    assert entry_count(standalone_url, prefix) == 0
    chunks = [c async for c in rag.astream("password?")]
    assert [c async for c in rag.astream("password?")] == chunks
    assert await rag.ainvoke("password?") == "".join(chunks)
    assert len(retriever.queries) == 2


def test_message_outputs_and_streams_round_trip(cache: ValkeyCache, retriever: Any) -> None:
    message = AIMessage("Use Settings.", response_metadata={"model_name": "fake"}, id="m-1")
    model = GenericFakeChatModel(messages=iter([message, message]))
    rag = CachedRunnable(make_chain(retriever, model, parse=False), cache=cache)
    first = rag.invoke("password?")
    assert rag.invoke("password?") == first and isinstance(first, AIMessage)
    chunks = list(rag.stream("billing?"))
    assert list(rag.stream("billing?")) == chunks
    replayed = rag.invoke("billing?")
    assert isinstance(replayed, AIMessage) and replayed.content == "Use Settings."


def test_dict_outputs_with_documents_round_trip(cache: ValkeyCache, retriever: Any, model: Any) -> None:
    chain = RunnableParallel(docs=retriever, question=RunnablePassthrough()).assign(
        answer=(lambda x: {"context": join(x["docs"]), "question": x["question"]})
        | ChatPromptTemplate.from_messages([("human", "{context} {question}")])
        | model
        | StrOutputParser()
    )
    rag = CachedRunnable(chain, cache=cache)
    first = rag.invoke("password?")
    again = rag.invoke("password?")
    assert again == first
    assert again["docs"] == [DOCS[0]] and isinstance(again["docs"][0], Document)
    assert len(retriever.queries) == 1
    assert list(rag.stream("password?")) and len(retriever.queries) == 1


def test_the_key_names_the_chain(cache: ValkeyCache, retriever: Any, model: Any) -> None:
    chain = make_chain(retriever, model)
    v1, v1_again, v2 = (CachedRunnable(chain, cache=cache, key=k) for k in ("bot:v1", "bot:v1", "bot:v2"))
    answer = v1.invoke("password?")
    assert v1_again.invoke("password?") == answer
    assert v2.invoke("password?") != answer


def test_the_default_key_tells_chains_apart(cache: ValkeyCache, retriever: Any) -> None:
    a = CachedRunnable(make_chain(retriever, FakeListChatModel(responses=["from a"])), cache=cache)
    b = CachedRunnable(make_chain(retriever, FakeListChatModel(responses=["from b"])), cache=cache)
    assert (a.invoke("password?"), b.invoke("password?")) == ("from a", "from b")


def test_configurable_values_are_part_of_the_key(cache: ValkeyCache, retriever: Any) -> None:
    model = FakeListChatModel(responses=["plain"]).configurable_fields(
        responses=ConfigurableField(id="answers")
    )
    rag = CachedRunnable(make_chain(retriever, model), cache=cache)
    assert rag.invoke("password?") == "plain"
    assert rag.invoke("password?", config={"configurable": {"answers": ["configured"]}}) == "configured"
    assert rag.invoke("password?", config={"configurable": {"answers": ["other"]}}) == "other"
    assert rag.invoke("password?", config={"configurable": {"answers": ["configured"]}}) == "configured"


def test_metadata_source_ids_add_dependencies(rag: Any, cache: ValkeyCache) -> None:
    rag.invoke("password?", config={"metadata": {"source_ids": ["policy-v2"]}})
    assert len(cache.dependents("policy-v2")) == 1 and len(cache.dependents("kb-reset")) == 1


def test_inside_a_larger_chain_the_sources_are_still_captured(
    rag: Any, cache: ValkeyCache, retriever: Any
) -> None:
    outer = RunnableLambda(lambda q: q.strip()) | rag | RunnableLambda(lambda a: a.upper())
    first = outer.invoke("  billing?  ")
    assert outer.invoke("  billing?  ") == first
    assert len(retriever.queries) == 1
    assert "".join(outer.stream("  billing?  ")) == first  # streamed through: replayed from the cache
    assert len(retriever.queries) == 1
    assert cache.invalidate_source("kb-billing") == 1


def test_an_invalidation_during_the_run_keeps_its_answer_out(
    cache: ValkeyCache, model: Any, standalone_url: str, prefix: str
) -> None:
    # The document changes after the lookup missed and before the answer is stored: storing would cache an
    # answer built on the old text, so the write is refused.
    retriever = CountingRetriever(docs=DOCS)
    retriever.on_call = lambda q: cache.invalidate_source("kb-reset") if len(retriever.queries) == 1 else None
    rag = CachedRunnable(make_chain(retriever, model), cache=cache)
    rag.invoke("password?")
    assert entry_count(standalone_url, prefix) == 0
    rag.invoke("password?")
    assert entry_count(standalone_url, prefix) == 1
    assert cache.stats()["totals"]["refused"] == 1


def test_an_invalidation_during_a_stream_keeps_it_out(
    cache: ValkeyCache, model: Any, standalone_url: str, prefix: str
) -> None:
    retriever = CountingRetriever(docs=DOCS)
    retriever.on_call = lambda q: (
        cache.invalidate_source("kb-billing") if len(retriever.queries) == 1 else None
    )
    rag = CachedRunnable(make_chain(retriever, model), cache=cache)
    list(rag.stream("billing?"))
    assert entry_count(standalone_url, prefix) == 0


async def test_an_invalidation_during_ainvoke_keeps_its_answer_out(
    cache: ValkeyCache, model: Any, standalone_url: str, prefix: str
) -> None:
    retriever = CountingRetriever(docs=DOCS)
    retriever.on_call = lambda q: cache.invalidate_source("kb-reset") if len(retriever.queries) == 1 else None
    rag = CachedRunnable(make_chain(retriever, model), cache=cache)
    await rag.ainvoke("password?")
    assert entry_count(standalone_url, prefix) == 0


def test_values_it_cannot_store_bypass_the_cache(
    cache: ValkeyCache, standalone_url: str, prefix: str
) -> None:
    class Opaque:
        pass

    calls: list[Any] = []
    make = CachedRunnable(RunnableLambda(lambda x: calls.append(x) or Opaque()), cache=cache)
    assert isinstance(make.invoke("q"), Opaque) and isinstance(make.invoke("q"), Opaque)
    takes = CachedRunnable(RunnableLambda(lambda x: calls.append(x) or "fine"), cache=cache)
    opaque = Opaque()
    assert takes.invoke(opaque) == "fine" and takes.invoke(opaque) == "fine"
    assert len(calls) == 4 and entry_count(standalone_url, prefix) == 0


def test_inputs_are_keyed_by_value(cache: ValkeyCache) -> None:
    calls: list[Any] = []
    echo = CachedRunnable(RunnableLambda(lambda x: calls.append(x) or {"got": x}), cache=cache)
    assert echo.invoke({"question": "q", "filters": ("a", 1)}) == {
        "got": {"question": "q", "filters": ("a", 1)}
    }
    assert echo.invoke({"question": "q", "filters": ("a", 1)}) == {
        "got": {"question": "q", "filters": ("a", 1)}
    }
    assert echo.invoke({"question": "q", "filters": ["a", 1]}) == {
        "got": {"question": "q", "filters": ["a", 1]}
    }
    assert len(calls) == 2


def test_an_undecodable_entry_is_recomputed_and_replaced(
    rag: Any, cache: ValkeyCache, retriever: Any
) -> None:
    key = rag._entry_key("password?", {})
    cache.core.store(key, {"o": {"$t": "pickle", "v": "cos\nsystem\n"}}, ["kb-reset"])
    answer = rag.invoke("password?")
    assert answer.startswith("answer number") and len(retriever.queries) == 1
    assert rag.invoke("password?") == answer


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


BAD_ENTRIES = [
    {"c": None},  # no output and no chunks: nothing to replay
    {"c": "not a list"},
    {},
    {"o": "x", "unknown": 1},
    {"o": {"$t": "pickle", "v": "cos\nsystem\n"}},
    {"o": nested(600)},  # deep enough to exhaust the recursion limit of an unbounded decoder
]


def test_stream_chunks_that_do_not_add_up_are_bad_data_for_invoke(rag: Any, cache: ValkeyCache) -> None:
    stored = {"c": [1, "a"]}  # a stream can replay these, but invoke has no single output to return
    with pytest.raises(DecodeError):
        decode_output(stored)
    assert cache.core.store(rag._entry_key("password?", {}), stored, ["kb-reset"])
    assert rag.invoke("password?").startswith("answer number")
    assert cache.stats()["totals"]["bad"] == 1


@pytest.mark.parametrize("stored", BAD_ENTRIES)
def test_a_bad_entry_is_recomputed_by_invoke(
    rag: Any, cache: ValkeyCache, retriever: Any, stored: Any
) -> None:
    with pytest.raises(DecodeError):  # the one rule: bad data is a DecodeError, never another error
        decode_output(stored)
    assert cache.core.store(rag._entry_key("password?", {}), stored, ["kb-reset"])
    answer = rag.invoke("password?")
    assert isinstance(answer, str) and answer.startswith("answer number")
    assert rag.invoke("password?") == answer and len(retriever.queries) == 1
    assert cache.stats()["totals"]["bad"] == 1


@pytest.mark.parametrize("stored", BAD_ENTRIES)
def test_a_bad_entry_is_recomputed_by_stream(
    rag: Any, cache: ValkeyCache, retriever: Any, stored: Any
) -> None:
    assert cache.core.store(rag._entry_key("password?", {}), stored, ["kb-reset"])
    chunks = list(rag.stream("password?"))
    assert chunks and all(isinstance(c, str) for c in chunks)
    assert "".join(chunks).startswith("answer number")
    assert list(rag.stream("password?")) == chunks and len(retriever.queries) == 1


@pytest.mark.parametrize("stored", BAD_ENTRIES)
async def test_a_bad_entry_is_recomputed_by_ainvoke_and_astream(
    rag: Any, cache: ValkeyCache, stored: Any
) -> None:
    key = rag._entry_key("password?", {})
    assert await cache.core.astore(key, stored, ["kb-reset"])
    assert (await rag.ainvoke("password?")).startswith("answer number")
    assert await cache.core.astore(key, stored, ["kb-reset"])
    chunks = [c async for c in rag.astream("password?")]
    assert chunks and "".join(chunks).startswith("answer number")


def racing_rag(cache: ValkeyCache, model: Any) -> CachedRunnable[Any, Any]:
    """A chain whose first retrieval is overtaken by a change of the document it read."""
    retriever = CountingRetriever(docs=DOCS)
    retriever.on_call = lambda q: cache.invalidate_source("kb-reset") if len(retriever.queries) == 1 else None
    return CachedRunnable(make_chain(retriever, model), cache=cache, key="racing")


@pytest.mark.parametrize("call", ["invoke", "stream"])
def test_after_a_bad_entry_the_write_is_still_race_checked(
    cache: ValkeyCache, model: Any, standalone_url: str, prefix: str, call: str
) -> None:
    rag = racing_rag(cache, model)
    cache.core.store(rag._entry_key("password?", {}), {"o": {"$t": "pickle", "v": "x"}}, ["kb-reset"])
    if call == "invoke":
        rag.invoke("password?")
    else:
        list(rag.stream("password?"))
    assert entry_count(standalone_url, prefix) == 0
    assert cache.stats()["totals"]["refused"] == 1


async def test_after_a_bad_entry_the_async_write_is_still_race_checked(
    cache: ValkeyCache, model: Any, standalone_url: str, prefix: str
) -> None:
    rag = racing_rag(cache, model)
    await cache.core.astore(rag._entry_key("password?", {}), {"c": None}, ["kb-reset"])
    await rag.ainvoke("password?")
    assert entry_count(standalone_url, prefix) == 0


def test_outputs_nested_too_deep_are_returned_uncached(
    cache: ValkeyCache, standalone_url: str, prefix: str
) -> None:
    calls: list[Any] = []
    deep = CachedRunnable(RunnableLambda(lambda d: calls.append(d) or nested(d)), cache=cache)
    assert deep.invoke(50) == nested(50) and deep.invoke(50) == nested(50)
    assert deep.invoke(500) == nested(500) and deep.invoke(500) == nested(500)
    assert calls == [50, 500, 500] and entry_count(standalone_url, prefix) == 1


def test_an_answer_cache_core_works_too(standalone_url: str, prefix: str, retriever: Any, model: Any) -> None:
    core = AnswerCache(standalone_url, prefix=prefix)
    rag = CachedRunnable(make_chain(retriever, model), cache=core)
    first = rag.invoke("billing?")
    assert rag.invoke("billing?") == first
    assert core.invalidate_source("kb-billing") == 1


@pytest.mark.cluster
def test_on_a_cluster(cluster_url: str, prefix: str, retriever: Any, model: Any) -> None:
    cache = ValkeyCache(cluster_url, prefix=prefix, namespace="tenant-b")
    rag = CachedRunnable(make_chain(retriever, model), cache=cache)
    first = rag.invoke("password?")
    assert rag.invoke("password?") == first
    assert list(rag.stream("password?")) == [first]
    assert cache.invalidate_source("kb-reset") == 1
    assert rag.invoke("password?") != first
