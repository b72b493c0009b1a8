"""The LangChain codec builds hits without pydantic's per-field loop; they are what was stored, exactly."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    HumanMessageChunk,
    SystemMessage,
    ToolMessage,
    ToolMessageChunk,
)
from langchain_core.outputs import ChatGeneration, Generation
from pydantic import BaseModel, PrivateAttr

from langchain_valkey_cache import codec
from valkey_rag_cache import jsonbytes

pytestmark = pytest.mark.fake

TOOL_CALL = {"name": "lookup", "args": {"q": "42", "n": [1, 2.5]}, "id": "call_1", "type": "tool_call"}
MESSAGES: list[BaseMessage] = [
    AIMessage("plain"),
    AIMessage(
        content=[
            {"type": "text", "text": "The answer"},
            {"type": "reasoning", "reasoning": "because"},
            " is 42",
        ],
        tool_calls=[TOOL_CALL],  # type: ignore[list-item]
        invalid_tool_calls=[
            {"name": "bad", "args": "{no", "id": "call_2", "error": "json", "type": "invalid_tool_call"}
        ],
        usage_metadata={
            "input_tokens": 12,
            "output_tokens": 7,
            "total_tokens": 19,
            "input_token_details": {"cache_read": 3},
            "output_token_details": {"reasoning": 2},
        },
        response_metadata={"model_name": "fake-1", "finish_reason": "tool_calls", "logprobs": [-0.25, -1e-9]},
        additional_kwargs={"refusal": None, "custom": {"nested": [1, "two"]}},
        id="run-3f1c5a7e-0",
        name="assistant",
    ),
    AIMessage("", tool_calls=[TOOL_CALL], id="only-tools"),  # type: ignore[list-item]
    AIMessageChunk(
        content="chunk",
        tool_call_chunks=[{"name": "lookup", "args": '{"q": "4', "id": "call_1", "index": 0}],
        chunk_position="last",
        id="c-1",
    ),
    HumanMessage("question?", id="h-1", name="user"),
    HumanMessageChunk("part"),
    SystemMessage([{"type": "text", "text": "be brief"}]),
    ToolMessage("42", tool_call_id="call_1", artifact={"rows": [1, 2]}, status="success", id="t-1"),
    ToolMessageChunk("4", tool_call_id="call_1", status="error"),
    ChatMessage("hi", role="critic", response_metadata={"score": 0.5}),
    FunctionMessage("{}", name="fn"),
]


def stored_and_back(value: Any) -> Any:
    """Through the bytes an entry holds: what a hit decodes."""
    return jsonbytes.loads(jsonbytes.dumps(value))


def state(obj: BaseModel) -> tuple[Any, ...]:
    """Everything pydantic keeps on an instance, with the order of its fields."""
    return (
        type(obj),
        list(obj.__dict__.items()),
        obj.__pydantic_fields_set__,
        obj.__pydantic_extra__,
        obj.__pydantic_private__,
    )


def test_every_allowlisted_class_takes_the_fast_path() -> None:
    # Otherwise the tests below would only test model_construct.
    assert set(codec._FAST_MESSAGES) == set(codec._MESSAGE_CLASSES)
    assert codec._CHAT_GEN_FAST and codec._GEN_FAST


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_a_decoded_message_is_the_stored_one_and_what_model_construct_builds(message: BaseMessage) -> None:
    data = stored_and_back(codec.encode_message(message))
    back = codec.decode_message(data)
    assert back == message
    assert repr(back) == repr(message)
    assert back.model_dump() == message.model_dump()
    fields = {k: v for k, v in data.items() if k != "type"}
    assert state(back) == state(type(message).model_construct(**fields))


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_chat_generations_come_back_equal(message: BaseMessage) -> None:
    gens = [ChatGeneration(message=message, generation_info={"finish_reason": "stop", "seed": 7})]
    back = codec.decode_generations(stored_and_back(codec.encode_generations(gens)))
    assert back == gens
    assert back[0].text == gens[0].text
    assert back[0].model_dump() == gens[0].model_dump()
    if isinstance(message.content, str):  # built directly; content blocks go through ChatGeneration itself
        assert state(back[0]) == state(
            ChatGeneration.model_construct(
                text=message.content, message=back[0].message, generation_info=gens[0].generation_info
            )
        )


def test_text_generations_come_back_equal_with_the_state_validation_leaves() -> None:
    gens = [Generation(text="four", generation_info={"logprobs": [-0.1]}), Generation(text="")]
    back = codec.decode_generations(stored_and_back(codec.encode_generations(gens)))
    assert back == gens
    # What validating the stored fields leaves (both are passed, as a stored generation holds both).
    assert [state(b) for b in back] == [
        state(Generation(text=g.text, generation_info=g.generation_info)) for g in gens
    ]


def test_a_message_stored_without_some_fields_is_built_by_model_construct() -> None:
    back = codec.decode_message({"type": "ai", "content": "short", "id": "x"})
    assert state(back) == state(AIMessage.model_construct(content="short", id="x"))
    assert back == AIMessage("short", id="x")


def test_the_fast_path_is_refused_where_it_would_differ() -> None:
    class WithPrivate(BaseModel):
        a: int = 0
        _p: int = PrivateAttr(default=1)

    class WithPostInit(BaseModel):
        a: int = 0

        def model_post_init(self, context: Any) -> None:
            pass

    class Aliased(BaseModel):
        a: int = 0
        b: int = 0

        model_config = {"populate_by_name": True}

    Aliased.model_fields["b"].alias = "bee"

    class Plain(BaseModel):
        a: int = 0
        b: str = "x"

    for cls in (WithPrivate, WithPostInit, Aliased):
        assert not codec._constructs_alike(cls, frozenset({"a"})), cls
    assert codec._constructs_alike(Plain, frozenset({"a", "b"}))


@pytest.mark.parametrize("name", sorted(codec._TYPES))
def test_the_inline_type_checks_are_the_field_checks(name: str) -> None:
    samples: list[Any] = [None, "", "x", 0, 1.5, True, [], ["x"], {}, {"a": 1}, (), object()]
    assert [isinstance(v, codec._TYPES[name]) for v in samples] == [codec._CHECKS[name](v) for v in samples]


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("id", 7),
        ("name", ["x"]),
        ("response_metadata", []),
        ("usage_metadata", "u"),
        ("additional_kwargs", None),
    ],
)
def test_a_stored_field_of_the_wrong_type_is_a_decode_error(field: str, bad: Any) -> None:
    data = codec.encode_message(MESSAGES[1])
    with pytest.raises(codec.DecodeError):
        codec.decode_message({**data, field: bad})


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("content", 7),
        ("content", [{"type": "text", "text": 3}]),
        ("tool_calls", [{"name": "f", "args": "not a dict", "id": "c"}]),
        ("tool_calls", {"name": "f"}),
        ("invalid_tool_calls", [{"name": 5}]),
        ("id", 7),
    ],
)
def test_a_whole_message_with_one_bad_field_is_a_decode_error(field: str, bad: Any) -> None:
    # Every field stored (the checks of a hit's common path), and the same with one field missing.
    data = codec.encode_message(MESSAGES[0])
    assert set(data) == set(AIMessage.model_fields)
    with pytest.raises(codec.DecodeError, match=field):
        codec.decode_message({**data, field: bad})
    partial = {k: v for k, v in data.items() if k != "name"}
    with pytest.raises(codec.DecodeError, match=field):
        codec.decode_message({**partial, field: bad})


def test_a_message_with_as_many_fields_but_one_unknown_is_a_decode_error() -> None:
    data = codec.encode_message(MESSAGES[0])
    odd = {("nom" if k == "name" else k): v for k, v in data.items()}
    assert len(odd) == len(data)
    with pytest.raises(codec.DecodeError, match="nom"):
        codec.decode_message(odd)


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_messages_are_stored_in_their_class_order_and_read_in_any_order(message: BaseMessage) -> None:
    data = codec.encode_message(message)
    assert list(data) == list(type(message).model_fields)  # "type" in its place: a hit takes the dict as is
    # Entries of earlier versions put "type" last; reversed is any other order: the same message.
    earlier = {**{k: v for k, v in data.items() if k != "type"}, "type": data["type"]}
    shuffled = dict(reversed(list(data.items())))
    for stored in (data, earlier, shuffled):
        back = codec.decode_message(stored_and_back(stored))
        assert state(back) == state(codec.decode_message(stored_and_back(data)))
        assert back == message and repr(back) == repr(message)


@pytest.mark.parametrize("kind", [[], {}, ["ai"], {"ai": 1}, 1, None, True])
def test_a_stored_type_that_is_not_a_string_is_a_decode_error(kind: Any) -> None:
    # A list or dict there is unhashable: a TypeError would be logged as a bug in the decoder.
    with pytest.raises(codec.DecodeError):
        codec.decode_message({"type": kind, "content": "x"})
    with pytest.raises(codec.DecodeError):
        codec.decode_generations({"g": [{"m": {"type": kind, "content": ""}}]})


@pytest.mark.parametrize(
    ("data", "missing"),
    [
        ({"type": "chat", "content": "x"}, "role"),
        ({"type": "tool", "content": "x"}, "tool_call_id"),
        ({"type": "function", "content": "x"}, "name"),
        ({"type": "ai", "id": "x"}, "content"),
    ],
)
def test_a_stored_message_without_a_field_its_class_requires_is_a_decode_error(
    data: dict[str, Any], missing: str
) -> None:
    # model_construct would build it with the field unset: an AttributeError later, in the user's code.
    with pytest.raises(codec.DecodeError, match=missing):
        codec.decode_message(data)
