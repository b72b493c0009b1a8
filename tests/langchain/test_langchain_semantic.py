"""Semantic matching in LangChain: `ValkeySemanticCache` and `CachedRunnable(embeddings=...)`."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.language_models import FakeListChatModel, FakeListLLM
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableLambda
from semantic_fakes import (
    REFUND,
    REFUND_NEGATED,
    REFUND_PARAPHRASE,
    UNRELATED,
    embed,
    langchain_embeddings,
)

from langchain_valkey_cache import CachedRunnable, ValkeyCache, ValkeySemanticCache
from langchain_valkey_cache.semantic import split_prompt

pytestmark = pytest.mark.standalone


@pytest.fixture
def cache(standalone_url: str, prefix: str) -> ValkeySemanticCache:
    return ValkeySemanticCache(
        langchain_embeddings(), 0.9, url=standalone_url, prefix=prefix, namespace="support"
    )


def model(cache: Any, *responses: str) -> FakeListChatModel:
    return FakeListChatModel(responses=list(responses or ("first answer", "second answer")), cache=cache)


def test_a_similar_question_gets_the_cached_answer_without_a_model_call(cache: ValkeySemanticCache) -> None:
    chat = model(cache)
    assert chat.invoke(REFUND).content == "first answer"
    assert chat.invoke(REFUND_PARAPHRASE).content == "first answer"  # a semantic hit
    assert chat.invoke(UNRELATED).content == "second answer"  # the model's next answer: a miss


def test_a_text_model_is_matched_on_its_whole_prompt(cache: ValkeySemanticCache) -> None:
    llm = FakeListLLM(responses=["first answer", "second answer"], cache=cache)
    assert llm.invoke(REFUND) == "first answer"
    assert llm.invoke(REFUND_PARAPHRASE) == "first answer"


async def test_async_calls_match_too(cache: ValkeySemanticCache) -> None:
    chat = model(cache)
    assert (await chat.ainvoke(REFUND)).content == "first answer"
    assert (await chat.ainvoke(REFUND_PARAPHRASE)).content == "first answer"


def test_the_rest_of_the_prompt_and_the_model_are_matched_exactly(cache: ValkeySemanticCache) -> None:
    chat = model(cache, "a", "b", "c", "d", "e")
    assert chat.invoke([SystemMessage("You answer for tenant A."), HumanMessage(REFUND)]).content == "a"
    assert (
        chat.invoke([SystemMessage("You answer for tenant A."), HumanMessage(REFUND_PARAPHRASE)]).content
        == "a"
    )
    # Another system prompt, another history, other stop words, another model: never the same partition.
    assert (
        chat.invoke([SystemMessage("You answer for tenant B."), HumanMessage(REFUND_PARAPHRASE)]).content
        == "b"
    )
    history = [HumanMessage("hi"), AIMessage("hello"), HumanMessage(REFUND_PARAPHRASE)]
    assert chat.invoke([SystemMessage("You answer for tenant A."), *history]).content == "c"
    assert chat.bind(stop=["\n"]).invoke(REFUND).content == "d"
    assert model(cache, "another model").invoke(REFUND_PARAPHRASE).content == "another model"


def test_a_prompt_ending_in_a_non_human_message_is_matched_exactly_only() -> None:
    from langchain_core.load import dumps

    assert split_prompt(dumps([HumanMessage("q"), AIMessage("a")])) == (None, None)
    question, rest = split_prompt(dumps([SystemMessage("s"), HumanMessage("q")]))
    assert question == "q" and rest[-1]["kwargs"]["content"] is None


def test_invalidating_a_source_retires_semantic_answers(cache: ValkeySemanticCache) -> None:
    chat = model(cache)
    with cache.sources(["kb/refunds.md"]):
        assert chat.invoke(REFUND).content == "first answer"
    assert chat.invoke(REFUND_PARAPHRASE).content == "first answer"
    assert cache.invalidate_source("kb/refunds.md") == 1
    assert chat.invoke(REFUND_PARAPHRASE).content == "second answer"


def test_the_lookalike_guard_is_on_by_default(cache: ValkeySemanticCache) -> None:
    chat = model(cache)
    chat.invoke(REFUND)
    assert chat.invoke(REFUND_NEGATED).content == "second answer"


def test_an_embedding_model_that_raises_is_a_miss_and_the_model_is_called(
    standalone_url: str, prefix: str
) -> None:
    def broken(text: str) -> list[float]:
        raise ConnectionError("embedding service down")

    cache = ValkeySemanticCache(langchain_embeddings(broken), url=standalone_url, prefix=prefix)
    chat = model(cache)
    assert chat.invoke(REFUND).content == "first answer"
    assert chat.invoke(REFUND).content == "first answer"  # still an exact hit
    assert chat.invoke(REFUND_PARAPHRASE).content == "second answer"
    assert cache.semantic.problems == {"embedding failed": 2}  # once per question: the write does not retry


def test_a_wrong_dimension_is_a_miss(standalone_url: str, prefix: str) -> None:
    sizes = iter([64, 32, 32])
    cache = ValkeySemanticCache(
        langchain_embeddings(lambda t: embed(t)[: next(sizes)]), url=standalone_url, prefix=prefix
    )
    chat = model(cache)
    chat.invoke(REFUND)
    assert chat.invoke(REFUND_PARAPHRASE).content == "second answer"
    assert cache.semantic.problems == {"embedding dimension": 1}


def test_configuration_errors() -> None:
    with pytest.raises(TypeError):
        ValkeySemanticCache(embed, url="valkey://localhost:1")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ValkeySemanticCache(langchain_embeddings(), 2.0, url="valkey://localhost:1")


# -- CachedRunnable ----


def counting_chain() -> tuple[Any, list[Any]]:
    calls: list[Any] = []

    def answer(x: Any) -> str:
        calls.append(x)
        return f"answer {len(calls)}"

    return RunnableLambda(answer), calls


@pytest.fixture
def plain(standalone_url: str, prefix: str) -> ValkeyCache:
    return ValkeyCache(standalone_url, prefix=prefix, namespace="support")


def test_cached_runnable_matches_a_string_input_semantically(plain: ValkeyCache) -> None:
    chain, calls = counting_chain()
    rag = CachedRunnable(chain, cache=plain, key="bot:v1", embeddings=langchain_embeddings())
    assert rag.invoke(REFUND, config={"metadata": {"source_ids": ["kb/refunds.md"]}}) == "answer 1"
    assert rag.invoke(REFUND_PARAPHRASE) == "answer 1"
    assert "".join(rag.stream(REFUND_PARAPHRASE)) == "answer 1"
    assert len(calls) == 1
    assert (
        CachedRunnable(chain, cache=plain, key="bot:v2", embeddings=langchain_embeddings()).invoke(
            REFUND_PARAPHRASE
        )
        == "answer 2"
    )  # another chain identity: another partition
    plain.invalidate_source("kb/refunds.md")
    assert rag.invoke(REFUND_PARAPHRASE) == "answer 3"


async def test_cached_runnable_async_and_astream(plain: ValkeyCache) -> None:
    chain, calls = counting_chain()
    rag = CachedRunnable(chain, cache=plain, key="bot:v1", embeddings=langchain_embeddings())
    assert await rag.ainvoke(REFUND) == "answer 1"
    assert await rag.ainvoke(REFUND_PARAPHRASE) == "answer 1"
    assert "".join([c async for c in rag.astream(REFUND_PARAPHRASE)]) == "answer 1"
    assert len(calls) == 1


def test_cached_runnable_matches_only_the_semantic_key_field_semantically(plain: ValkeyCache) -> None:
    chain, calls = counting_chain()
    rag = CachedRunnable(
        chain, cache=plain, key="bot", embeddings=langchain_embeddings(), semantic_key="question"
    )
    assert rag.invoke({"question": REFUND, "tenant": "a"}) == "answer 1"
    assert rag.invoke({"question": REFUND_PARAPHRASE, "tenant": "a"}) == "answer 1"
    assert rag.invoke({"question": REFUND_PARAPHRASE, "tenant": "b"}) == "answer 2"  # another field value
    assert (
        rag.invoke({"question": REFUND_PARAPHRASE, "tenant": "a"}, {"configurable": {"k": 1}}) == "answer 3"
    )
    assert rag.invoke({"question": REFUND_NEGATED, "tenant": "a"}) == "answer 4"  # the guard
    assert len(calls) == 4


def test_cached_runnable_without_semantic_key_matches_dict_inputs_exactly(plain: ValkeyCache) -> None:
    chain, calls = counting_chain()
    rag = CachedRunnable(chain, cache=plain, key="bot", embeddings=langchain_embeddings())
    assert rag.invoke({"question": REFUND}) == "answer 1"
    assert rag.invoke({"question": REFUND}) == "answer 1"
    assert rag.invoke({"question": REFUND_PARAPHRASE}) == "answer 2"
