"""What goes into a LlamaIndex key: the shortcuts (scalars, formatters, cached field lists) change nothing."""

from __future__ import annotations

import enum
import hashlib
from typing import Any

import pytest
from llama_index.core.base.llms.types import MessageRole
from pydantic import BaseModel, SecretStr
from pydantic_core import to_jsonable_python

from llamaindex_support import CountingLLM
from llamaindex_valkey_cache import keying
from valkey_rag_cache.digests import json_field

pytestmark = pytest.mark.fake


def reference_describe(obj: Any) -> Any:
    code = getattr(obj, "__code__", None)
    if code is not None:
        body = hashlib.blake2b(code.co_code + repr(code.co_consts).encode(), digest_size=12).hexdigest()
        return {"function": keying.qualified(obj), "code": body}
    return keying._describe(obj)


def reference_settings(model: BaseModel) -> dict[str, Any]:
    """`settings_of` as it was written first: every field through pydantic's JSON conversion."""
    out: dict[str, Any] = {}
    for name in sorted(type(model).model_fields):
        if name in keying._IGNORED or keying._SECRET.search(name):
            continue
        value = getattr(model, name, None)
        if isinstance(value, SecretStr):
            continue
        if isinstance(value, BaseModel):
            out[name] = {"class": keying.qualified(type(value)), "settings": reference_settings(value)}
        else:
            out[name] = to_jsonable_python(value, fallback=reference_describe, serialize_unknown=False)
    return out


class Mode(enum.Enum):
    FAST = "fast"


class Inner(BaseModel):
    depth: int = 1
    token: str = "never in a key"


def formatter(text: str) -> str:
    return text.upper()


class SettingsLLM(CountingLLM):
    temperature: float = 0.5
    top_k: int = 3
    flag: bool = False
    label: str | None = None
    mode: Mode = Mode.FAST
    stops: list[str] = ["\n"]
    extra: dict[str, Any] = {"a": [1, 2.5]}
    inner: Inner = Inner()
    api_key: SecretStr = SecretStr("sk-x")
    fmt: Any = formatter
    big: int = 2**80


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"temperature": float("nan")},
        {"temperature": 1e300, "top_k": -7, "flag": True, "label": "é"},
        {"fmt": lambda text: text},
        {"fmt": len},
        {"stops": []},
    ],
)
def test_settings_are_what_pydantic_alone_gives(changes: dict[str, Any]) -> None:
    llm = SettingsLLM(**changes)
    assert repr(keying.settings_of(llm)) == repr(reference_settings(llm))
    assert "api_key" not in keying.settings_of(llm)
    assert "token" not in keying.settings_of(llm)["inner"]["settings"]


def test_a_changed_setting_or_formatter_changes_the_identity() -> None:
    llm = SettingsLLM()
    before = keying.llm_identity(llm)
    assert keying.llm_identity(llm) == before
    llm.temperature = 0.6
    changed = keying.llm_identity(llm)
    assert changed != before
    llm.fmt = lambda text: text  # same module and a lambda's name: the code tells them apart
    first = keying.llm_identity(llm)
    llm.fmt = lambda text: text + "!"
    assert keying.llm_identity(llm) != first != changed


# -- the identity kept between calls (`IdentityMemo`): rebuilt whenever anything it reads changed ----------


def fresh_identity(llm: Any) -> str:
    return json_field(keying.llm_identity(llm))


class Holder(BaseModel):
    items: Any = None


class DeepLLM(SettingsLLM):
    nested: dict[str, Any] = {"a": {"b": [1, {"c": "x"}]}}
    holder: Holder = Holder()
    role: MessageRole = MessageRole.USER


def set_attr(name: str, value: Any) -> Any:
    return lambda llm: setattr(llm, name, value)


MUTATIONS = [
    ("temperature", set_attr("temperature", 0.75)),
    ("int to bool", lambda llm: setattr(llm, "top_k", True) if llm.top_k == 1 else setattr(llm, "top_k", 1)),
    ("int to float", set_attr("top_k", 3.0)),
    ("str to None", set_attr("label", None)),
    ("None to str", set_attr("label", "x")),
    ("enum", set_attr("role", MessageRole.SYSTEM)),
    ("str-enum to another str", set_attr("role", "system")),
    ("list in place", lambda llm: llm.stops.append("END")),
    ("list item in place", lambda llm: llm.stops.__setitem__(0, "\r\n")),
    ("dict in place", lambda llm: llm.extra.__setitem__("z", 1)),
    ("dict value in place", lambda llm: llm.extra["a"].append(3)),
    ("deep dict in place", lambda llm: llm.nested["a"]["b"][1].__setitem__("c", "y")),
    ("dict value 1 to True", lambda llm: llm.nested["a"]["b"].__setitem__(0, True)),
    ("nested model field", lambda llm: setattr(llm.inner, "depth", 2)),
    ("nested model replaced", set_attr("inner", Inner(depth=9))),
    ("formatter", set_attr("fmt", lambda text: text.lower())),
    ("formatter code", lambda llm: setattr(llm.fmt, "__code__", (lambda text: text * 2).__code__)),
    ("model inside a plain field", lambda llm: setattr(llm.holder, "items", [1, 2])),
    ("big int", set_attr("big", 2**81)),
    ("nan", set_attr("temperature", float("nan"))),
    ("metadata (a property of the settings)", set_attr("model", "counting-9")),
]


@pytest.mark.parametrize("name,mutate", MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_the_kept_identity_follows_every_change(name: str, mutate: Any) -> None:
    llm = DeepLLM(label="x" if name == "str to None" else None)
    memo = keying.IdentityMemo()
    before = memo.text(llm)
    assert before == fresh_identity(llm)
    assert memo.text(llm) is before  # kept: nothing changed
    mutate(llm)
    after = memo.text(llm)
    assert after == fresh_identity(llm)
    assert after != before
    assert memo.text(llm) == after


def test_an_enum_and_its_value_are_one_identity_both_ways() -> None:
    llm, memo = DeepLLM(), keying.IdentityMemo()
    before = memo.text(llm)
    llm.role = "user"  # type: ignore[assignment]  # the JSON is the same: so is the key, as before
    assert memo.text(llm) == fresh_identity(llm) == before


def test_the_kept_identity_is_per_llm_object() -> None:
    memo = keying.IdentityMemo()
    first, second = DeepLLM(), DeepLLM(temperature=0.1)
    assert memo.text(first) == fresh_identity(first)
    assert memo.text(second) == fresh_identity(second) != fresh_identity(first)
    assert memo.text(first) == fresh_identity(first)


def test_what_a_token_cannot_see_is_built_every_time() -> None:
    class ObjectLLM(CountingLLM):
        thing: Any = None

    llm = ObjectLLM(thing={1, 2})  # a set: not plain data
    assert keying.identity_token(llm) is None
    memo = keying.IdentityMemo()
    before = memo.text(llm)
    llm.thing.add(3)
    assert memo.text(llm) == fresh_identity(llm) != before


def test_call_json_sorts_keys_and_keeps_types_and_nan_apart() -> None:
    assert json_field({"b": 1, "a": {"d": 2, "c": 3}}) == json_field({"a": {"c": 3, "d": 2}, "b": 1})
    texts = [json_field(v) for v in (None, float("nan"), float("inf"), 1, 1.0, True, "1", [1], 2**70)]
    assert len(set(texts)) == len(texts)
    assert json_field("\ud800") != json_field("\ud801")  # lone surrogates: written by json, kept apart


def _messages() -> list[Any]:
    from llama_index.core.base.llms.types import ChatMessage, ImageBlock, TextBlock, ThinkingBlock

    return [
        ChatMessage(role="system", content="Answer from the context only."),
        ChatMessage(role=MessageRole.USER, blocks=[TextBlock(text="a"), TextBlock(text="")]),
        ChatMessage(role="assistant", content=None),  # no blocks
        ChatMessage(role="tool", content="x", additional_kwargs={"tool_call_id": "c1"}),  # kwargs: pydantic
        ChatMessage(role="user", blocks=[TextBlock(text="see"), ImageBlock(url="https://example.com/a.png")]),
        ChatMessage(role="assistant", blocks=[ThinkingBlock(content="hm"), TextBlock(text="b")]),
        ChatMessage.model_construct(role="user", additional_kwargs={}, blocks=[]),  # a str role: pydantic
        ChatMessage(role="user", content='é \u2028 \\ "q"'),
    ]


def test_plain_messages_are_read_directly_and_give_what_pydantic_gives() -> None:
    # The shortcut is on for the LlamaIndex installed here (else this test guards nothing)...
    assert keying._FAST_MESSAGES
    assert keying._plain_message_json(_messages()[0]) is not None
    # ...and every message, read directly or not, is the JSON pydantic's conversion gives.
    messages = _messages()
    assert keying.messages_json(messages) == to_jsonable_python(messages)
    for message in messages:
        assert json_field(keying.messages_json([message])) == json_field(to_jsonable_python([message]))
    fallbacks = [m for m in messages if keying._plain_message_json(m) is None]
    assert len(fallbacks) == 4  # the kwargs, image, thinking and str-role messages go through pydantic


def test_a_message_changed_in_place_changes_its_key_json() -> None:
    from llama_index.core.base.llms.types import TextBlock

    message = _messages()[1]
    before = json_field(keying.messages_json([message]))
    message.blocks[1] = TextBlock(text="now")
    assert json_field(keying.messages_json([message])) != before
