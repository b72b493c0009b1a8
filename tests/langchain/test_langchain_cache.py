"""ValkeyCache as LangChain's BaseCache, on a real Valkey, with LangChain's own fake models."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import valkey
import valkey.asyncio as avalkey
from langchain_core.globals import get_llm_cache, set_llm_cache
from langchain_core.language_models import FakeListChatModel, FakeListLLM, GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, Generation

import langchain_valkey_cache
from langchain_valkey_cache import ValkeyCache
from langchain_valkey_cache.codec import decode_generations
from valkey_rag_cache import AnswerCache, DecodeError, DoctorReport
from valkey_rag_cache.digests import fields_digest

pytestmark = pytest.mark.standalone

RICH = AIMessage(
    content=[
        {"type": "text", "text": "The answer is 42."},
        {"type": "reasoning", "reasoning": "because"},
    ],
    tool_calls=[{"name": "lookup", "args": {"q": "42", "n": [1, 2]}, "id": "call_1", "type": "tool_call"}],
    invalid_tool_calls=[
        {
            "name": "broken",
            "args": "{not json",
            "id": "call_2",
            "error": "bad json",
            "type": "invalid_tool_call",
        }
    ],
    usage_metadata={
        "input_tokens": 12,
        "output_tokens": 7,
        "total_tokens": 19,
        "input_token_details": {"cache_read": 3},
    },
    response_metadata={"model_name": "fake-1", "finish_reason": "tool_calls", "logprobs": None},
    additional_kwargs={"refusal": None, "custom": {"nested": [1, "two"]}},
    id="msg-1",
    name="assistant",
)


@pytest.fixture
def global_cache(cache: ValkeyCache) -> Iterator[ValkeyCache]:
    before = get_llm_cache()
    set_llm_cache(cache)
    yield cache
    set_llm_cache(before)


def entry_count(url: str, prefix: str) -> int:
    return sum(1 for _ in valkey.Valkey.from_url(url).scan_iter(f"{prefix}:*:e:*"))


def test_public_api_is_pinned() -> None:
    assert langchain_valkey_cache.__all__ == [
        "CachedRunnable",
        "InvalidatingVectorStore",
        "ValkeyCache",
        "ValkeySemanticCache",
    ]


def test_set_llm_cache_serves_a_chat_model_from_the_cache(global_cache: ValkeyCache) -> None:
    model = FakeListChatModel(responses=["first", "second"])
    assert model.invoke("hi").content == "first"
    assert model.invoke("hi").content == "first"  # a hit: the model was not asked again
    assert model.invoke("other").content == "second"
    assert global_cache.stats()["totals"]["hits"] == 1


def test_a_models_cache_field_works_for_text_models(cache: ValkeyCache) -> None:
    llm = FakeListLLM(responses=["one", "two", "three"], cache=cache)
    assert llm.invoke("q1") == "one"
    assert llm.invoke("q1") == "one"
    assert llm.batch(["q1", "q2"]) == ["one", "two"]
    assert llm.i == 2  # two real calls for three prompts' worth of answers


def test_set_llm_cache_serves_a_text_model_from_the_cache(global_cache: ValkeyCache) -> None:
    llm = FakeListLLM(responses=["first", "second"])
    assert [llm.invoke("hi"), llm.invoke("hi"), llm.invoke("other")] == ["first", "first", "second"]


def test_a_backend_that_is_down_turns_into_misses() -> None:
    cache = ValkeyCache("valkey://127.0.0.1:1", timeout=0.2)
    model = FakeListChatModel(responses=["a", "b"], cache=cache)
    assert [model.invoke("q").content, model.invoke("q").content] == ["a", "b"]
    assert cache.lookup("p", "l") is None


def test_cache_false_on_a_model_bypasses_a_global_cache(
    global_cache: ValkeyCache, standalone_url: str, prefix: str
) -> None:
    model = FakeListChatModel(responses=["a", "b"], cache=False)
    assert [model.invoke("hi").content, model.invoke("hi").content] == ["a", "b"]
    assert entry_count(standalone_url, prefix) == 0


def test_chat_generations_round_trip_exactly(cache: ValkeyCache) -> None:
    gens = [ChatGeneration(message=RICH, generation_info={"finish_reason": "tool_calls", "seed": 7})]
    cache.update("prompt", "llm", gens)
    (back,) = cache.lookup("prompt", "llm") or []
    assert back == gens[0]
    message = back.message
    assert isinstance(message, AIMessage)
    assert message.content == RICH.content
    assert message.tool_calls == RICH.tool_calls
    assert message.invalid_tool_calls == RICH.invalid_tool_calls
    assert message.usage_metadata == RICH.usage_metadata
    assert message.response_metadata == RICH.response_metadata
    assert message.additional_kwargs == RICH.additional_kwargs
    assert (message.id, message.name) == ("msg-1", "assistant")
    assert back.text == gens[0].text
    assert back.generation_info == {"finish_reason": "tool_calls", "seed": 7}


def test_a_string_answer_round_trips_through_a_model(cache: ValkeyCache) -> None:
    plain = AIMessage("plain text", response_metadata={"model_name": "m"}, id="x-1")
    model = GenericFakeChatModel(messages=iter([plain, RICH]), cache=cache)
    first = model.invoke([HumanMessage("q")])
    second = model.invoke([HumanMessage("q")])
    assert second.content == first.content == "plain text"
    assert second.id == first.id
    assert second.response_metadata == first.response_metadata
    # LangChain itself marks a hit by zeroing its cost; nothing else differs.
    assert second.usage_metadata == {"total_cost": 0}


def test_tool_calls_and_usage_round_trip_through_a_model(cache: ValkeyCache) -> None:
    model = GenericFakeChatModel(messages=iter([RICH]), cache=cache)
    first = model.invoke("call a tool")
    second = model.invoke("call a tool")  # the iterator is exhausted: only the cache can answer
    assert second.tool_calls == first.tool_calls == RICH.tool_calls
    assert second.invalid_tool_calls == RICH.invalid_tool_calls
    assert second.content == RICH.content
    assert second.usage_metadata == {**(RICH.usage_metadata or {}), "total_cost": 0}


def test_text_generations_round_trip_exactly(cache: ValkeyCache) -> None:
    gens = [Generation(text="four", generation_info={"logprobs": [-0.1, -0.2]}), Generation(text="")]
    cache.update("2+2", "llm", gens)
    assert cache.lookup("2+2", "llm") == gens


def test_lc_shaped_data_comes_back_as_plain_data(cache: ValkeyCache, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VRC_TEST_SECRET", "s3cret")
    secret_ref = {"lc": 1, "type": "secret", "id": ["VRC_TEST_SECRET"]}
    constructor = {
        "lc": 1,
        "type": "constructor",
        "id": ["langchain_core", "messages", "AIMessage"],
        "kwargs": {},
    }
    message = AIMessage(
        "hello", response_metadata={"token": secret_ref}, additional_kwargs={"obj": constructor}, id="m"
    )
    cache.update("p", "l", [ChatGeneration(message=message)])
    (back,) = cache.lookup("p", "l") or []
    assert back.message.response_metadata == {"token": secret_ref}
    assert back.message.additional_kwargs == {"obj": constructor}
    assert "s3cret" not in repr(back)


@pytest.mark.parametrize(
    "stored",
    [
        "not a dict",
        {"g": "nope"},
        {"g": [{"m": {"type": "constructor", "content": "x"}}]},  # not an allowed message type
        {"g": [{"m": {"type": "ai", "content": 42}}]},
        {"g": [{"m": {"type": "ai", "content": "x", "__class__": "os.system"}}]},
        {"g": [{"m": {"type": "ai", "content": "x", "tool_calls": "rm -rf"}}]},
        {"g": [{"t": 5}]},
        {"g": []},  # LangChain would index into an empty list of generations
        {"g": [{"t": "x"}], "extra": 1},
        {"g": [{"m": {"type": "ai", "content": [{"text": 5}]}}]},  # ChatGeneration joins block texts
        {"g": [{"m": {"type": "ai", "content": [{"type": "text", "text": None}]}}]},
        {"g": [{"m": {"type": "ai", "content": "x", "tool_calls": [{"name": 5, "args": {}}]}}]},
        {"g": [{"m": {"type": "ai", "content": "x", "tool_calls": [{"name": "f", "args": "{}"}]}}]},
        {"g": [{"m": {"type": "ai", "content": "x", "invalid_tool_calls": [{"args": {"a": 1}}]}}]},
        {"g": [{"m": {"type": "AIMessageChunk", "content": "x", "tool_call_chunks": [{"index": "0"}]}}]},
    ],
)
def test_undecodable_values_are_a_miss_and_are_removed(
    cache: ValkeyCache, standalone_url: str, prefix: str, stored: Any
) -> None:
    with pytest.raises(DecodeError):  # the one rule: bad data is a DecodeError, never another error
        decode_generations(stored)
    key = cache._key("prompt", "llm")
    assert cache.core.store(key, stored, ["doc-x"])
    assert cache.lookup("prompt", "llm") is None
    assert entry_count(standalone_url, prefix) == 0
    assert cache.stats()["totals"]["bad"] == 1


def corrupt_the_entry(url: str, prefix: str, old: bytes, new: bytes) -> None:
    """Edit the one stored entry's bytes in place, as data no writer of ours made."""
    raw = valkey.Valkey.from_url(url)
    (key,) = raw.scan_iter(f"{prefix}:*:e:*")
    header, body = raw.get(key).split(b"\n\n", 1)
    assert old in body
    raw.set(key, header + b"\n\n" + body.replace(old, new), keepttl=True)


def test_a_model_call_on_an_undecodable_entry_recomputes_instead_of_raising(
    cache: ValkeyCache, standalone_url: str, prefix: str
) -> None:
    model = FakeListChatModel(responses=["first", "second"], cache=cache)
    assert model.invoke("hello").content == "first"
    corrupt_the_entry(standalone_url, prefix, b'"content":"first"', b'"content":[{"text":5}]')
    assert model.invoke("hello").content == "second"
    assert model.invoke("hello").content == "second"  # the recomputed answer replaced the bad entry
    assert cache.stats()["totals"]["bad"] == 1


async def test_an_async_model_call_on_an_undecodable_entry_recomputes(
    cache: ValkeyCache, standalone_url: str, prefix: str
) -> None:
    model = FakeListChatModel(responses=["first", "second"], cache=cache)
    assert (await model.ainvoke("hello")).content == "first"
    corrupt_the_entry(standalone_url, prefix, b'"content":"first"', b'"content":[{"text":5}]')
    assert (await model.ainvoke("hello")).content == "second"


class InvalidatingModel(FakeListChatModel):
    """A fake chat model that runs `during` while it answers: after the cache lookup, before the update."""

    during: Any = None

    def _call(self, *args: Any, **kwargs: Any) -> str:
        if self.during is not None:
            self.during()
        return super()._call(*args, **kwargs)


def test_after_an_undecodable_entry_the_write_is_still_race_checked(
    cache: ValkeyCache, standalone_url: str, prefix: str
) -> None:
    model = InvalidatingModel(responses=["first", "second"], cache=cache)
    model.invoke("hello")
    corrupt_the_entry(standalone_url, prefix, b'"content":"first"', b'"content":42')
    model.during = cache.invalidate_namespace
    model.invoke("hello")
    assert entry_count(standalone_url, prefix) == 0  # overtaken by the invalidation: refused
    assert cache.stats()["totals"]["refused"] == 1


async def test_after_an_undecodable_entry_the_async_write_is_still_race_checked(
    cache: ValkeyCache, standalone_url: str, prefix: str
) -> None:
    model = InvalidatingModel(responses=["first", "second"], cache=cache)
    await model.ainvoke("hello")
    corrupt_the_entry(standalone_url, prefix, b'"content":"first"', b'"content":42')
    model.during = cache.invalidate_namespace
    await model.ainvoke("hello")
    assert entry_count(standalone_url, prefix) == 0


def test_a_message_that_would_not_decode_is_not_stored(
    cache: ValkeyCache, standalone_url: str, prefix: str
) -> None:
    odd = AIMessage.model_construct(content=[{"type": "text", "text": None}])
    cache.update("p", "l", [ChatGeneration.model_construct(message=odd, text="")])
    cache.update("p", "l", [])
    assert entry_count(standalone_url, prefix) == 0


def test_the_default_timeout_is_the_cores(standalone_url: str, prefix: str) -> None:
    def socket_timeout(core: AnswerCache) -> Any:
        return core.connector.sync_client().connection_pool.connection_kwargs["socket_timeout"]

    default = socket_timeout(AnswerCache(standalone_url, prefix=prefix))
    assert socket_timeout(ValkeyCache(standalone_url, prefix=prefix).core) == default
    assert socket_timeout(ValkeyCache(standalone_url, prefix=prefix, timeout=2.5).core) == 2.5


async def test_undecodable_values_are_a_miss_and_are_removed_async(
    cache: ValkeyCache, standalone_url: str, prefix: str
) -> None:
    key = cache._key("prompt", "llm")
    assert await cache.core.astore(key, {"g": [{"m": {"type": "system.exec", "content": ""}}]})
    assert await cache.alookup("prompt", "llm") is None
    assert entry_count(standalone_url, prefix) == 0


def test_the_key_covers_the_whole_llm_string(cache: ValkeyCache) -> None:
    base = '{"model": "m"}---'
    cache.update("p", base + "[('tools', [{'name': 'a'}])]", [Generation(text="with tool a")])
    assert cache.lookup("p", base + "[('tools', [{'name': 'b'}])]") is None
    assert cache.lookup("p", base + "[('stop', None)]") is None
    assert cache.lookup("p", base + "[('tools', [{'name': 'a'}])]") == [Generation(text="with tool a")]


@pytest.mark.parametrize(
    ("stored", "other"),
    [
        (("c", "ab"), ("bc", "a")),  # the text shifts from the llm_string into the prompt
        (("ab", "c"), ("a", "bc")),
        (("", "xy"), ("xy", "")),
        (("p", 'm"}---'), ('p"}---', "m")),
        (("p", "m"), ("p\x00", "m")),
    ],
)
def test_prompts_and_llm_strings_that_shift_never_share_an_entry(
    cache: ValkeyCache, stored: tuple[str, str], other: tuple[str, str]
) -> None:
    cache.update(*stored, [Generation(text="stored")])
    assert cache.lookup(*other) is None
    assert cache._key(*stored) != cache._key(*other)
    assert cache.lookup(*stored) == [Generation(text="stored")]


def test_the_key_is_the_digest_of_the_length_prefixed_fields(cache: ValkeyCache) -> None:
    key = cache._key("a prompt", "an llm")
    assert key.namespace == cache.namespace
    assert key.digest == fields_digest("lc", "an llm", "a prompt")


def test_a_confined_cache_checks_its_namespace_once(standalone_url: str, prefix: str) -> None:
    cache = ValkeyCache(standalone_url, prefix=prefix, namespace="tenant-a:support", confined=True)
    assert cache._key("p", "l").namespace == "tenant-a:support"
    cache.core.namespace = "tenant-b"  # a namespace outside its tree: refused, not used
    with pytest.raises(ValueError):
        cache._key("p", "l")


def test_calls_that_differ_in_tools_never_share_an_entry(cache: ValkeyCache) -> None:
    model = FakeListChatModel(responses=["uses a", "uses b", "plain"], cache=cache)
    tool_a = {"type": "function", "function": {"name": "a", "parameters": {}}}
    tool_b = {"type": "function", "function": {"name": "b", "parameters": {}}}
    assert model.bind(tools=[tool_a]).invoke("q").content == "uses a"
    assert model.bind(tools=[tool_b]).invoke("q").content == "uses b"
    assert model.invoke("q").content == "plain"
    assert model.bind(tools=[tool_a]).invoke("q").content == "uses a"
    assert model.bind(tools=[tool_b]).invoke("q").content == "uses b"


def test_models_with_different_parameters_do_not_share_entries(cache: ValkeyCache) -> None:
    one = FakeListChatModel(responses=["from one"], cache=cache)
    two = FakeListChatModel(responses=["from two"], cache=cache)
    assert one.invoke("q").content == "from one"
    assert two.invoke("q").content == "from two"


def test_clear_removes_only_this_caches_namespace(standalone_url: str, prefix: str) -> None:
    mine = ValkeyCache(standalone_url, prefix=prefix, namespace="team:a")
    theirs = ValkeyCache(standalone_url, prefix=prefix, namespace="team:b")
    mine.update("p", "l", [Generation(text="mine")])
    theirs.update("p", "l", [Generation(text="theirs")])
    mine.clear()
    assert mine.lookup("p", "l") is None
    assert theirs.lookup("p", "l") == [Generation(text="theirs")]


def test_clear_spares_keys_outside_the_prefix(cache: ValkeyCache, standalone_url: str, prefix: str) -> None:
    raw = valkey.Valkey.from_url(standalone_url)
    raw.set(f"other-{prefix}", "keep me")
    cache.update("p", "l", [Generation(text="x")])
    cache.clear()
    assert raw.get(f"other-{prefix}") == b"keep me"
    raw.delete(f"other-{prefix}")


async def test_async_methods_run_on_an_asyncio_client(standalone_url: str, prefix: str) -> None:
    # Given only an asyncio client, a thread fallback to the sync methods could not work at all.
    cache = ValkeyCache(client=avalkey.Valkey.from_url(standalone_url), prefix=prefix)
    gens = [ChatGeneration(message=RICH)]
    assert await cache.alookup("p", "l") is None
    await cache.aupdate("p", "l", gens)
    assert await cache.alookup("p", "l") == gens
    await cache.aclear()
    assert await cache.alookup("p", "l") is None


async def test_ainvoke_and_abatch_use_the_cache(cache: ValkeyCache) -> None:
    model = FakeListChatModel(responses=[f"r{i}" for i in range(10)], cache=cache)
    first = await model.ainvoke("q")
    assert (await model.ainvoke("q")).content == first.content
    answers = await model.abatch(["q", "q2", "q3"])
    assert answers[0].content == first.content
    llm = FakeListLLM(responses=[f"t{i}" for i in range(10)], cache=cache)
    assert await llm.abatch(["a", "b"]) == await llm.abatch(["a", "b"])


def test_operations_of_the_core_are_on_the_cache(
    cache: ValkeyCache, standalone_url: str, prefix: str
) -> None:
    with cache.sources(["doc-1", "doc-2"]):
        cache.update("p1", "l", [Generation(text="1")])
    with cache.sources("doc-2"):
        cache.update("p2", "l", [Generation(text="2")])
    cache.update("p3", "l", [Generation(text="3")])
    assert len(cache.dependents("doc-2")) == 2
    assert cache.invalidate_source("doc-1") == 1
    assert cache.lookup("p1", "l") is None and cache.lookup("p2", "l") is not None
    assert cache.invalidate_sources(["doc-2"]) == 1
    assert cache.lookup("p3", "l") is not None
    cache.invalidate_namespace()  # its own namespace by default
    assert cache.lookup("p3", "l") is None
    cache.update("p4", "l", [Generation(text="4")])
    cache.invalidate_all()
    assert cache.lookup("p4", "l") is None
    assert cache.purge() >= 0
    assert cache.stats()["totals"]["invalidations"] >= 1
    assert isinstance(cache.doctor(), DoctorReport)


async def test_async_invalidation_on_the_cache(cache: ValkeyCache) -> None:
    with cache.sources("doc-a"):
        await cache.aupdate("p", "l", [Generation(text="x")])
    assert await cache.ainvalidate_source("doc-a") == 1
    assert await cache.alookup("p", "l") is None


def test_a_shared_core_is_accepted(standalone_url: str, prefix: str) -> None:
    core = AnswerCache(standalone_url, prefix=prefix, namespace="shared")
    cache = ValkeyCache(core=core)
    assert cache.core is core and cache.namespace == "shared"
    with pytest.raises(TypeError):
        ValkeyCache(standalone_url, core=core)


def test_an_answer_that_is_not_json_is_skipped_not_raised(
    cache: ValkeyCache, standalone_url: str, prefix: str
) -> None:
    weird = AIMessage("x", response_metadata={"obj": object()})
    cache.update("p", "l", [ChatGeneration(message=weird)])
    cache.update(
        "p", "l", [ChatGeneration(message=AIMessage("y", response_metadata={"score": float("nan")}))]
    )
    assert cache.lookup("p", "l") is None
    assert entry_count(standalone_url, prefix) == 0


def test_stream_bypasses_base_cache(cache: ValkeyCache, standalone_url: str, prefix: str) -> None:
    # Documented LangChain behaviour: a model with _stream never consults BaseCache in stream(); use
    # CachedRunnable to cache streams.
    model = FakeListChatModel(responses=["streamed"], cache=cache)
    assert "".join(str(c.content) for c in model.stream("q")) == "streamed"
    assert entry_count(standalone_url, prefix) == 0


def test_a_hit_is_one_pipeline_and_no_script(cache: ValkeyCache, standalone_url: str) -> None:
    gens = [ChatGeneration(message=RICH)]
    with cache.sources(["d1", "d2", "d3", "d4", "d5"]):
        cache.update("p", "l", gens)
    assert cache.lookup("p", "l") == gens  # warm: connection and script loaded
    raw, other = valkey.Valkey.from_url(standalone_url), valkey.Valkey.from_url(standalone_url)
    other.ping()  # connected before watching, so its handshake is not listed
    marker = f"end-of-test-{cache.core.schema.prefix}"
    line = cache.core._sync._lines[""][1]
    assert line is not None
    host, port = line._local.conn._sock.getsockname()[:2]
    with raw.monitor() as monitor:
        assert cache.lookup("p", "l") == gens
        other.get(marker)
        sent = []
        while marker not in (command := monitor.next_command())["command"]:
            # This cache's connection only (another test's cache may flush its counts meanwhile); the
            # commands run inside a script are listed too, as the script's.
            mine = (command["client_address"], int(command["client_port"])) == (host, port)
            if mine or command["client_type"] == "lua":
                sent.append(command["command"].split()[0].upper())
    # One write over the cache's direct line (`lookup.peek`): a write (the counts of earlier lookups), the
    # group's membership in the index, the entry, its group's clock; no script.
    assert sent == ["HINCRBY", "SISMEMBER", "GET", "HMGET"]


@pytest.mark.cluster
def test_a_cluster_serves_and_invalidates(cluster_url: str, prefix: str) -> None:
    cache = ValkeyCache(cluster_url, prefix=prefix, namespace="tenant-a:docs")
    model = FakeListChatModel(responses=["one", "two"], cache=cache)
    with cache.sources("kb/a.md"):
        assert model.invoke("q").content == "one"
    assert model.invoke("q").content == "one"
    assert cache.invalidate_source("kb/a.md") == 1
    assert model.invoke("q").content == "two"
