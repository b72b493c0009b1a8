"""CachedLLM: hits, streams, keys, exact round trips, safe decoding, prompt fields and function calling."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from llama_index.core import Settings
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    ImageBlock,
    LLMMetadata,
    LogProb,
    MessageRole,
    TextBlock,
    ThinkingBlock,
    ToolCallBlock,
)
from llama_index.core.llms import MockLLM
from llama_index.core.llms.callbacks import llm_chat_callback
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.mock import MockFunctionCallingLLM
from llama_index.core.prompts import PromptTemplate
from llama_index.core.tools import FunctionTool
from pydantic import BaseModel, PrivateAttr

from llamaindex_support import CountingLLM
from llamaindex_valkey_cache import CachedFunctionCallingLLM, CachedLLM, LlamaIndexCache, codec
from valkey_rag_cache import DecodeError

pytestmark = pytest.mark.standalone


def user(text: str) -> list[ChatMessage]:
    return [ChatMessage(role=MessageRole.USER, content=text)]


# -- hits: every entry point -------------------------------------------------------------------------


def test_complete_and_chat_hit_without_calling_the_inner_llm(cache: LlamaIndexCache) -> None:
    inner = CountingLLM()
    llm = CachedLLM(llm=inner, cache=cache)
    first = llm.complete("What is billing?")
    again = llm.complete("What is billing?")
    assert inner.calls == 1 and again.text == first.text
    chat = llm.chat(user("hello"))
    chat_again = llm.chat(user("hello"))
    assert inner.calls == 2 and chat_again.message.content == chat.message.content
    assert chat_again.raw is None  # the provider's raw object is never stored


async def test_async_twins_hit(cache: LlamaIndexCache) -> None:
    inner = CountingLLM()
    llm = CachedLLM(llm=inner, cache=cache)
    first = await llm.acomplete("async prompt")
    assert (await llm.acomplete("async prompt")).text == first.text
    chat = await llm.achat(user("async chat"))
    assert (await llm.achat(user("async chat"))).message.content == chat.message.content
    assert inner.calls == 2


def test_stream_is_stored_when_read_to_the_end_and_replayed_chunk_by_chunk(cache: LlamaIndexCache) -> None:
    inner = CountingLLM()
    llm = CachedLLM(llm=inner, cache=cache)
    live = list(llm.stream_complete("stream me"))
    replay = list(llm.stream_complete("stream me"))
    assert inner.calls == 1
    assert [c.delta for c in replay] == [c.delta for c in live] and len(live) > 2
    assert [c.text for c in replay] == [c.text for c in live]
    live_chat = list(llm.stream_chat(user("stream chat")))
    replay_chat = list(llm.stream_chat(user("stream chat")))
    assert inner.calls == 2
    assert [c.delta for c in replay_chat] == [c.delta for c in live_chat]
    assert [c.message.content for c in replay_chat] == [c.message.content for c in live_chat]


async def test_async_stream_replayed(cache: LlamaIndexCache) -> None:
    inner = CountingLLM()
    llm = CachedLLM(llm=inner, cache=cache)
    live = [c async for c in await llm.astream_chat(user("async stream"))]
    replay = [c async for c in await llm.astream_chat(user("async stream"))]
    assert inner.calls == 1 and [c.delta for c in replay] == [c.delta for c in live]
    live_c = [c async for c in await llm.astream_complete("async stream complete")]
    replay_c = [c async for c in await llm.astream_complete("async stream complete")]
    assert inner.calls == 2 and [c.text for c in replay_c] == [c.text for c in live_c]


def test_chat_and_stream_chat_share_entries(cache: LlamaIndexCache) -> None:
    inner = CountingLLM()
    llm = CachedLLM(llm=inner, cache=cache)
    streamed = list(llm.stream_chat(user("shared")))
    assert llm.chat(user("shared")).message.content == streamed[-1].message.content
    chatted = llm.chat(user("shared too"))
    replay = list(llm.stream_chat(user("shared too")))
    assert replay[-1].message.content == chatted.message.content
    assert inner.calls == 2


def test_an_abandoned_stream_is_never_stored(cache: LlamaIndexCache) -> None:
    inner = CountingLLM()
    llm = CachedLLM(llm=inner, cache=cache)
    stream = llm.stream_complete("abandon me")
    next(stream)
    stream.close()
    list(llm.stream_complete("abandon me"))
    assert inner.calls == 2  # nothing was stored by the abandoned stream
    list(llm.stream_complete("abandon me"))
    assert inner.calls == 2  # the complete one was


class FailingStreamLLM(CountingLLM):
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        def gen() -> Any:
            self._calls += 1
            yield CompletionResponse(text="partial", delta="partial")
            raise ConnectionError("provider dropped the stream")

        return gen()


def test_a_failed_stream_is_never_stored(cache: LlamaIndexCache) -> None:
    inner = FailingStreamLLM()
    llm = CachedLLM(llm=inner, cache=cache)
    for _ in range(2):
        with pytest.raises(ConnectionError):
            list(llm.stream_complete("fails midway"))
    assert inner.calls == 2
    assert cache.stats()["totals"]["writes"] == 0


# -- the key covers everything that changes the output ----------------------------------------------


def test_key_covers_messages_roles_blocks_prompt_and_kwargs(cache: LlamaIndexCache) -> None:
    inner = CountingLLM()
    llm = CachedLLM(llm=inner, cache=cache)
    calls = [
        lambda: llm.chat(user("same text")),
        lambda: llm.chat([ChatMessage(role=MessageRole.SYSTEM, content="same text")]),
        lambda: llm.chat(
            [ChatMessage(role=MessageRole.USER, blocks=[TextBlock(text="same text"), TextBlock(text="!")])]
        ),
        lambda: llm.chat(
            [
                ChatMessage(
                    role=MessageRole.USER,
                    blocks=[ImageBlock(image=b"\x89PNG\r\n\x1a\n1"), TextBlock(text="same text")],
                )
            ]
        ),
        lambda: llm.chat(
            [
                ChatMessage(
                    role=MessageRole.USER,
                    blocks=[ImageBlock(image=b"\x89PNG\r\n\x1a\n2"), TextBlock(text="same text")],
                )
            ]
        ),
        lambda: llm.chat(user("same text"), temperature=0.2),
        lambda: llm.complete("same text"),
        lambda: llm.complete("same text", formatted=True),
    ]
    for n, call in enumerate(calls, start=1):
        call()
        assert inner.calls == n, f"call {n} was served from another call's entry"
    for call in calls:
        call()
    assert inner.calls == len(calls)


def test_key_covers_the_inner_llm_class_metadata_and_settings(cache: LlamaIndexCache) -> None:
    base = CountingLLM()
    CachedLLM(llm=base, cache=cache).complete("q")
    other_model = CountingLLM(model="counting-2")
    CachedLLM(llm=other_model, cache=cache).complete("q")
    assert other_model.calls == 1  # other metadata: a miss

    class OtherCountingLLM(CountingLLM):
        pass

    other_class = OtherCountingLLM()
    CachedLLM(llm=other_class, cache=cache).complete("q")
    assert other_class.calls == 1
    mock_a, mock_b = MockLLM(max_tokens=3), MockLLM(max_tokens=4)
    assert (
        CachedLLM(llm=mock_a, cache=cache).complete("q").text
        != CachedLLM(llm=mock_b, cache=cache).complete("q").text
    )
    same = CountingLLM()
    CachedLLM(llm=same, cache=cache).complete("q")
    assert same.calls == 0  # same class, metadata and settings: the first entry


def test_a_setting_changed_between_calls_changes_the_key(cache: LlamaIndexCache) -> None:
    inner = CountingLLM()
    llm = CachedLLM(llm=inner, cache=cache)
    llm.complete("q")
    llm.complete("q")
    assert inner.calls == 1
    inner.model = "counting-2"  # reassigned on the inner LLM: its identity is read anew
    llm.complete("q")
    assert inner.calls == 2
    other = CountingLLM(model="counting-3")
    llm.llm = other  # the wrapper pointed at another LLM
    llm.complete("q")
    assert other.calls == 1 and inner.calls == 2
    inner.model = "counting-1"
    llm.llm = inner
    llm.complete("q")  # back to the first settings: the first entry
    assert inner.calls == 2


def test_equal_conversations_share_a_key_whatever_their_dicts_order(cache: LlamaIndexCache) -> None:
    inner = CountingLLM()
    llm = CachedLLM(llm=inner, cache=cache)

    def asked(extra: dict[str, Any], **kwargs: Any) -> list[ChatMessage]:
        return [ChatMessage(role=MessageRole.USER, content="q", additional_kwargs=extra)]

    llm.chat(asked({"a": 1, "b": {"c": 2, "d": 3}}), tool_choice={"x": 1, "y": 2})
    llm.chat(asked({"b": {"d": 3, "c": 2}, "a": 1}), tool_choice={"y": 2, "x": 1})
    assert inner.calls == 1
    llm.chat(asked({"a": True, "b": {"c": 2, "d": 3}}), tool_choice={"x": 1, "y": 2})
    llm.chat(asked({"a": 1.0, "b": {"c": 2, "d": 3}}), tool_choice={"x": 1, "y": 2})
    llm.chat(asked({"a": 1, "b": {"c": 2, "d": 3}}), tool_choice={"x": 1, "y": float("nan")})
    llm.chat(asked({"a": 1, "b": {"c": 2, "d": 3}}), tool_choice={"x": 1, "y": None})
    assert inner.calls == 5


def test_key_ignores_credentials(cache: LlamaIndexCache) -> None:
    class KeyedLLM(CountingLLM):
        api_key: str = ""

    first, rotated = KeyedLLM(api_key="sk-old"), KeyedLLM(api_key="sk-new")
    CachedLLM(llm=first, cache=cache).complete("q")
    CachedLLM(llm=rotated, cache=cache).complete("q")
    assert rotated.calls == 0


def test_key_covers_tools(cache: LlamaIndexCache) -> None:
    inner = MockFunctionCallingLLM()
    llm = CachedLLM(llm=inner, cache=cache)

    def add(a: int = 1, b: int = 2) -> int:
        """Add two numbers."""
        return a + b

    def mul(a: int = 1, b: int = 2) -> int:
        """Multiply two numbers."""
        return a * b

    by_add = llm.chat_with_tools([FunctionTool.from_defaults(fn=add)], user_msg="compute")
    by_mul = llm.chat_with_tools([FunctionTool.from_defaults(fn=mul)], user_msg="compute")
    assert [b.tool_name for b in by_add.message.blocks] == ["add"]
    assert [b.tool_name for b in by_mul.message.blocks] == ["mul"]


# -- exact round trip -------------------------------------------------------------------------------


RICH = ChatResponse(
    message=ChatMessage(
        role=MessageRole.ASSISTANT,
        blocks=[
            ThinkingBlock(
                content="The user wants the weather.", num_tokens=7, additional_information={"sig": "x1"}
            ),
            TextBlock(text="Let me check."),
            ToolCallBlock(
                tool_call_id="call_1", tool_name="weather", tool_kwargs={"city": "Oslo", "days": [1, 2]}
            ),
        ],
        additional_kwargs={"finish_reason": "tool_calls", "usage": {"prompt_tokens": 12}},
    ),
    delta=None,
    logprobs=[[LogProb(token="Let", logprob=-0.1, bytes=[76, 101, 116])]],
    additional_kwargs={"model": "rich-1", "prompt_tokens": 12},
)


class RichLLM(CountingLLM):
    """Chat answers with thinking, text and tool-call blocks, logprobs and a provider raw object."""

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        self._calls += 1
        return RICH.model_copy(update={"raw": {"id": "resp_1", "client": object()}})

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self.chat(messages, **kwargs)

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        def gen() -> ChatResponseGen:
            self._calls += 1
            yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content="Let"), delta="Let")
            yield RICH.model_copy(update={"delta": " me check.", "raw": object()})

        return gen()

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        async def gen() -> ChatResponseAsyncGen:
            for chunk in self.stream_chat(messages, **kwargs):
                yield chunk

        return gen()


def test_chat_response_round_trips_exactly_without_raw(cache: LlamaIndexCache) -> None:
    inner = RichLLM()
    llm = CachedLLM(llm=inner, cache=cache)
    live = llm.chat(user("weather in Oslo?"))
    hit = llm.chat(user("weather in Oslo?"))
    assert inner.calls == 1
    assert hit == live.model_copy(update={"raw": None})
    assert hit == RICH
    assert isinstance(hit.message.blocks[0], ThinkingBlock) and isinstance(
        hit.message.blocks[2], ToolCallBlock
    )


def test_streamed_rich_response_replays_with_its_blocks(cache: LlamaIndexCache) -> None:
    inner = RichLLM()
    llm = CachedLLM(llm=inner, cache=cache)
    live = list(llm.stream_chat(user("stream weather")))
    replay = list(llm.stream_chat(user("stream weather")))
    assert inner.calls == 1
    assert [c.delta for c in replay] == ["Let", " me check."]
    assert replay[-1].message == RICH.message and replay[-1].logprobs == RICH.logprobs
    assert replay[-1] == live[-1].model_copy(update={"raw": None})


def test_completion_response_round_trips_exactly(cache: LlamaIndexCache) -> None:
    class DetailedLLM(CountingLLM):
        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
            self._calls += 1
            return CompletionResponse(
                text="Forty-two.",
                additional_kwargs={"tokens": 3},
                logprobs=[[LogProb(token="Forty", logprob=-0.5, bytes=[70])]],
                raw=object(),
            )

    inner = DetailedLLM()
    llm = CachedLLM(llm=inner, cache=cache)
    live = llm.complete("meaning of life")
    assert llm.complete("meaning of life") == live.model_copy(update={"raw": None})
    assert inner.calls == 1


# -- safe decoding ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"chat": {"message": 5}, "deltas": None},
        {"chat": {"message": {"role": "assistant", "blocks": [{"block_type": "nope"}]}}, "deltas": None},
        {"chat": {"message": {"role": "assistant", "additional_kwargs": {"images": [{"image": "x"}]}}}},
        {"chat": {"message": {"role": "assistant", "content": "ok"}}, "deltas": [1, 2]},
        {"lc": 1, "type": "constructor", "id": ["os", "system"], "kwargs": {"command": "id"}},
        "plain string",
    ],
)
def test_bad_stored_data_is_a_miss_and_is_discarded(cache: LlamaIndexCache, bad: Any) -> None:
    with pytest.raises(DecodeError):  # the one rule: bad data is a DecodeError, never None or another error
        codec.decode_chat(bad)
    inner = CountingLLM()
    llm = CachedLLM(llm=inner, cache=cache)
    key = llm._chat_key(user("poisoned"), {})
    assert cache.core.store(key, bad)
    response = llm.chat(user("poisoned"))
    assert inner.calls == 1 and response.message.content.startswith("answer 1")
    assert cache.stats()["totals"]["bad"] == 1
    assert llm.chat(user("poisoned")).message.content == response.message.content  # rewritten, now a hit
    assert inner.calls == 1


def media_entries(secret: str) -> dict[str, Any]:
    """Crafted chat entries whose blocks would make whoever resolves them read a file or fetch a URL."""

    def entry(*blocks: dict[str, Any], **message: Any) -> dict[str, Any]:
        text = {"block_type": "text", "text": "see attachment"}
        return {"chat": {"message": {"role": "assistant", "blocks": [text, *blocks], **message}}}

    return {
        "image path": entry({"block_type": "image", "path": secret, "image_mimetype": "image/png"}),
        "image url": entry({"block_type": "image", "url": "http://169.254.169.254/latest/meta-data/"}),
        "inline image": entry({"block_type": "image", "image": "aGVsbG8=", "image_mimetype": "image/png"}),
        "audio path": entry({"block_type": "audio", "path": secret, "format": "mp3"}),
        "video path": entry({"block_type": "video", "path": secret}),
        "document path": entry({"block_type": "document", "path": secret}),
        "citable": entry({"block_type": "citable", "title": "t", "source": "s", "content": []}),
        "legacy images": entry(additional_kwargs={"images": [{"image_path": secret}]}),
        "content list": entry(content=[{"block_type": "image", "path": secret}]),
    }


MEDIA = list(media_entries("/x"))


@pytest.mark.parametrize("kind", MEDIA)
def test_stored_media_blocks_are_bad_data_never_decoded(
    cache: LlamaIndexCache, tmp_path: Any, kind: str
) -> None:
    """Only text, thinking and tool-call blocks come back from the cache: nothing that points to a file."""
    secret = tmp_path / "secret.txt"
    secret.write_text("API_KEY=sk-live-123")
    stored = media_entries(str(secret))[kind]
    with pytest.raises(DecodeError):
        codec.decode_chat(stored)
    inner = CountingLLM()
    llm = CachedLLM(llm=inner, cache=cache)
    key = llm._chat_key(user("show me"), {})
    assert cache.core.store(key, stored)
    response = llm.chat(user("show me"))
    assert inner.calls == 1 and response.message.content.startswith("answer 1")
    assert all(isinstance(b, TextBlock) for b in response.message.blocks)
    assert cache.stats()["totals"]["bad"] == 1


def test_a_response_with_media_blocks_is_returned_but_not_cached(
    cache: LlamaIndexCache, caplog: pytest.LogCaptureFixture
) -> None:
    class PaintingLLM(CountingLLM):
        @llm_chat_callback()
        def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
            self._calls += 1
            blocks = [
                TextBlock(text="here"),
                ImageBlock(image=b"\x89PNG\r\n\x1a\n", image_mimetype="image/png"),
            ]
            return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, blocks=blocks))

    inner = PaintingLLM()
    llm = CachedLLM(llm=inner, cache=cache)
    first = llm.chat(user("draw a cat"))
    assert isinstance(first.message.blocks[1], ImageBlock)
    llm.chat(user("draw a cat"))
    assert inner.calls == 2 and "not caching" in caplog.text and "ImageBlock" in caplog.text


def test_bad_data_costs_one_lookup_and_the_write_after_it_is_still_race_checked(
    cache: LlamaIndexCache,
) -> None:
    class InvalidatingLLM(CountingLLM):
        def _answer(self, prompt: str) -> str:
            cache.invalidate_source("manual.md")  # lands between the lookup and the store
            return super()._answer(prompt)

    inner = InvalidatingLLM()
    llm = CachedLLM(llm=inner, cache=cache)
    key = llm._chat_key(user("poisoned"), {})
    assert cache.core.store(key, {"chat": {"message": 5}})
    with cache.sources(["manual.md"]):
        llm.chat(user("poisoned"))
    totals = cache.stats()["totals"]
    assert totals["bad"] == 1 and totals["hits"] + totals["misses"] == 1  # looked up once
    assert totals["refused"] == 1  # the answer the invalidation overtook was not stored
    with cache.sources(["manual.md"]):
        llm.chat(user("poisoned"))
    assert inner.calls == 2


# -- an LLM for Settings.llm --------------------------------------------------------------------------


def test_copies_the_inner_llms_prompt_shaping_fields(cache: LlamaIndexCache) -> None:
    def to_prompt(messages: Sequence[ChatMessage]) -> str:
        return " | ".join(f"{m.role.value}: {m.content}" for m in messages)

    def wrap(completion: str) -> str:
        return f"<<{completion}>>"

    inner = MockLLM(system_prompt="Be brief.", messages_to_prompt=to_prompt, completion_to_prompt=wrap)
    llm = CachedLLM(llm=inner, cache=cache)
    assert llm.system_prompt == "Be brief."
    assert llm.messages_to_prompt is to_prompt and llm.completion_to_prompt is wrap
    assert llm.pydantic_program_mode == inner.pydantic_program_mode
    prompt = PromptTemplate("Tell me about {topic}")
    assert llm.predict(prompt, topic="cats") == inner.predict(prompt, topic="cats")
    assert llm.metadata == inner.metadata


def test_usable_as_settings_llm(settings: Any, cache: LlamaIndexCache) -> None:
    _, inner = settings
    Settings.llm = CachedLLM(llm=inner, cache=cache)
    assert isinstance(Settings.llm, CachedLLM)
    Settings.llm.predict(PromptTemplate("Say {x}"), x="hi")
    Settings.llm.predict(PromptTemplate("Say {x}"), x="hi")
    assert inner.calls == 1


# -- function calling -------------------------------------------------------------------------------


class CountingFunctionCallingLLM(MockFunctionCallingLLM):
    _calls: int = PrivateAttr(default=0)

    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        self._calls += 1
        return super().chat(messages, **kwargs)

    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        self._calls += 1
        return super().stream_chat(messages, **kwargs)

    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        self._calls += 1
        return await super().astream_chat(messages, **kwargs)


def add(a: int = 1, b: int = 2) -> int:
    """Add two numbers."""
    return a + b


class Pet(BaseModel):
    name: str = "Rex"
    legs: int = 4


def test_function_calling_llm_gets_the_function_calling_wrapper(cache: LlamaIndexCache) -> None:
    llm = CachedLLM(llm=MockFunctionCallingLLM(), cache=cache)
    assert isinstance(llm, CachedFunctionCallingLLM) and isinstance(llm, FunctionCallingLLM)
    assert llm.metadata.is_function_calling_model
    assert not isinstance(CachedLLM(llm=CountingLLM(), cache=cache), FunctionCallingLLM)


def test_tool_calls_are_cached_and_still_work(cache: LlamaIndexCache) -> None:
    inner = CountingFunctionCallingLLM()
    llm = CachedLLM(llm=inner, cache=cache)
    tool = FunctionTool.from_defaults(fn=add)
    first = llm.chat_with_tools([tool], user_msg="add the numbers")
    again = llm.chat_with_tools([tool], user_msg="add the numbers")
    assert inner._calls == 1 and again.message.blocks == first.message.blocks
    calls = llm.get_tool_calls_from_response(again)
    assert [(c.tool_name, c.tool_kwargs) for c in calls] == [("add", {"a": 1, "b": 2})]
    assert str(llm.predict_and_call([tool], user_msg="add the numbers")) == "3"
    assert inner._calls == 1


def test_structured_predict_works_through_the_cache(cache: LlamaIndexCache) -> None:
    inner = CountingFunctionCallingLLM()
    llm = CachedLLM(llm=inner, cache=cache)
    prompt = PromptTemplate("Describe a pet called {name}")
    assert llm.structured_predict(Pet, prompt, name="Rex") == Pet()
    assert llm.structured_predict(Pet, prompt, name="Rex") == Pet()
    assert inner._calls == 1


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the workflow library's own warnings
async def test_function_agent_runs_on_the_cached_llm(cache: LlamaIndexCache) -> None:
    inner = CountingFunctionCallingLLM()
    llm = CachedLLM(llm=inner, cache=cache)
    agent = FunctionAgent(tools=[FunctionTool.from_defaults(fn=add)], llm=llm)
    first = await agent.run("please add")
    calls = inner._calls
    assert calls == 2 and "Tool calls complete." in str(first)  # a tool call, then the final answer
    second = await agent.run("please add")
    assert str(second) == str(first) and inner._calls == calls


def test_wrapper_requires_an_llm_and_a_valkey_cache(cache: LlamaIndexCache) -> None:
    with pytest.raises(TypeError):
        CachedLLM(llm="gpt", cache=cache)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        CachedLLM(llm=CountingLLM(), cache=object())  # type: ignore[arg-type]


def test_metadata_comes_from_the_inner_llm(cache: LlamaIndexCache) -> None:
    inner = CountingLLM(model="m-7")
    assert CachedLLM(llm=inner, cache=cache).metadata == LLMMetadata(
        model_name="m-7", num_output=64, context_window=4096
    )


def test_concurrent_async_calls_each_get_their_own_answer(cache: LlamaIndexCache) -> None:
    inner = CountingLLM()
    llm = CachedLLM(llm=inner, cache=cache)

    async def run() -> list[str]:
        return [r.text for r in await asyncio.gather(*(llm.acomplete(f"prompt {i}") for i in range(5)))]

    first = asyncio.run(run())
    assert asyncio.run(run()) == first and inner.calls == 5
    assert all(f"prompt {i}" in text for i, text in enumerate(first))


def test_a_response_json_cannot_hold_is_returned_but_not_cached(
    cache: LlamaIndexCache, caplog: pytest.LogCaptureFixture
) -> None:
    class OddLLM(CountingLLM):
        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
            self._calls += 1
            return CompletionResponse(text="odd", additional_kwargs={"handle": object()})

    inner = OddLLM()
    llm = CachedLLM(llm=inner, cache=cache)
    assert llm.complete("q").text == "odd" and llm.complete("q").text == "odd"
    assert inner.calls == 2 and "not caching" in caplog.text
