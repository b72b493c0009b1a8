"""Encoding of LangChain values as plain JSON data, and the allowlisted decoding back.

Messages travel as their field dicts (``{"type": "ai", "content": ..., "tool_calls": ...}``), not through
``langchain_core.load``: decoding is several times cheaper, and nothing in stored bytes can name a class,
a constructor or a secret. A message's ``type`` picks a class from a fixed allowlist; every other field is
kept as plain data, so a ``{"lc": 1, "type": "secret", ...}`` dict inside metadata comes back as that dict.

Example:
    >>> from langchain_core.messages import AIMessage
    >>> data = encode_message(AIMessage("hi", id="m1"))
    >>> decode_message(data) == AIMessage("hi", id="m1")
    True
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from langchain_core.documents import Document
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    ChatMessageChunk,
    FunctionMessage,
    FunctionMessageChunk,
    HumanMessage,
    HumanMessageChunk,
    SystemMessage,
    SystemMessageChunk,
    ToolMessage,
    ToolMessageChunk,
)
from langchain_core.outputs import ChatGeneration, Generation
from langchain_core.runnables.utils import AddableDict
from pydantic import BaseModel

from valkey_rag_cache.errors import DecodeError  # the core's rule: stored data we did not write is a miss

__all__ = [
    "DecodeError",
    "UnsupportedValue",
    "decode_generations",
    "decode_message",
    "decode_value",
    "encode_generations",
    "encode_message",
    "encode_value",
]


M = TypeVar("M", bound=BaseModel)


class UnsupportedValue(TypeError):
    """A value this codec cannot store faithfully: the cache skips the write instead of storing a lie."""


# Each message class with its chunk class (what a stream yields).
_MESSAGE_PAIRS: tuple[tuple[type[BaseMessage], type[BaseMessage]], ...] = (
    (AIMessage, AIMessageChunk),
    (HumanMessage, HumanMessageChunk),
    (SystemMessage, SystemMessageChunk),
    (ToolMessage, ToolMessageChunk),
    (ChatMessage, ChatMessageChunk),
    (FunctionMessage, FunctionMessageChunk),
)
_MESSAGE_CLASSES = tuple(cls for pair in _MESSAGE_PAIRS for cls in pair)
# The allowlist: a stored "type" can only ever build one of these classes.
_BY_TYPE: dict[str, type[BaseMessage]] = {cls.model_fields["type"].default: cls for cls in _MESSAGE_CLASSES}
_FIELDS: dict[type[BaseMessage], tuple[str, ...]] = {
    cls: tuple(name for name in cls.model_fields if name != "type") for cls in _MESSAGE_CLASSES
}


# -- building trusted objects ---------------------------------------------------------------------------
# What ``model_construct`` leaves, without its per-field loop (aliases, defaults): used only for classes where
# that is provably the same, checked once at import (`_constructs_alike`); the others use model_construct.
_new = object.__new__
# BaseModel's own slots (`_constructs_alike` checks it has exactly these), set through their descriptors:
# what object.__setattr__ finds for each name, without the lookup (two messages a hit).
_set_dict, _set_fields_set, _set_extra, _set_private = (
    BaseModel.__dict__[name].__set__
    for name in ("__dict__", "__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__")
)


def _construct(cls: type[M], data: dict[str, Any], fields_set: frozenset[str], extra: bool) -> M:
    """``cls.model_construct(**values)`` when `data` holds every field of `cls` (in any order).

    `fields_set`: the fields model_construct would mark as set (those passed); `extra`: whether
    ``model_config["extra"] == "allow"`` (model_construct then leaves an empty dict of extras).
    """
    return _adopt(cls, {name: data[name] for name in cls.__pydantic_fields__}, fields_set, extra)


def _adopt(cls: type[M], state: dict[str, Any], fields_set: frozenset[str], extra: bool) -> M:
    """`_construct` given the instance's ``__dict__`` already: every field, in the class's order."""
    obj = _new(cls)
    _set_dict(obj, state)
    _set_fields_set(obj, set(fields_set))
    _set_extra(obj, {} if extra else None)
    _set_private(obj, None)
    return obj


def _extra_allowed(cls: type[BaseModel]) -> bool:
    return cls.model_config.get("extra") == "allow"


def _constructs_alike(cls: type[BaseModel], passed: frozenset[str]) -> bool:
    """Does `_construct` leave exactly what model_construct leaves for `cls` (its state, field order)?"""
    if (
        cls.__new__ is not object.__new__
        or cls.__pydantic_post_init__
        or cls.__pydantic_root_model__
        or cls.__private_attributes__
        or BaseModel.__slots__
        != ("__dict__", "__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__")
        or any(f.alias or f.validation_alias for f in cls.__pydantic_fields__.values())
    ):
        return False
    data: dict[str, Any] = {name: f"value of {name}" for name in cls.__pydantic_fields__}
    slow = cls.model_construct(**{name: data[name] for name in passed})
    slow_state = {name: data[name] if name in passed else getattr(slow, name) for name in data}
    fast = _construct(cls, slow_state, passed, _extra_allowed(cls))
    return (
        list(fast.__dict__.items()) == list(slow.__dict__.items())
        and fast.__pydantic_fields_set__ == slow.__pydantic_fields_set__
        and fast.__pydantic_extra__ == slow.__pydantic_extra__
        and type(fast.__pydantic_extra__) is type(slow.__pydantic_extra__)
        and fast.__pydantic_private__ == slow.__pydantic_private__
        and fast == slow
    )


# Messages as stored carry every field: built like this when the class passes the check.
_FAST_MESSAGES: dict[type[BaseMessage], tuple[frozenset[str], bool]] = {
    cls: (frozenset(_FIELDS[cls]), _extra_allowed(cls))
    for cls in _MESSAGE_CLASSES
    if _constructs_alike(cls, frozenset(_FIELDS[cls]))
}
_CHAT_GEN_PASSED = frozenset({"text", "message", "generation_info"})
_CHAT_GEN_TYPE = ChatGeneration.model_fields["type"].default
# Built from a dict literal in this order (`decode_generations`): the fast path needs the class's order too.
_CHAT_GEN_FAST = _constructs_alike(ChatGeneration, _CHAT_GEN_PASSED) and tuple(
    ChatGeneration.__pydantic_fields__
) == ("text", "generation_info", "type", "message")
_CHAT_GEN_EXTRA = _extra_allowed(ChatGeneration)
_GEN_PASSED = frozenset({"text", "generation_info"})
_GEN_TYPE = Generation.model_fields["type"].default
_GEN_FAST = _constructs_alike(Generation, _GEN_PASSED) and tuple(Generation.__pydantic_fields__) == (
    "text",
    "generation_info",
    "type",
)
_GEN_EXTRA = _extra_allowed(Generation)


_STR_OR_NONE = (str, type(None))


def _is_str_or_none(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _is_block(item: Any) -> bool:
    # ChatGeneration joins the "text" of content blocks: anything but a string there fails on a hit.
    return isinstance(item, str) or (isinstance(item, dict) and isinstance(item.get("text", ""), str))


def _is_content(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and all(_is_block(item) for item in value))


def _is_opt_str(item: dict[str, Any], *names: str) -> bool:
    return all(_is_str_or_none(item.get(name)) for name in names)


def _is_tool_call(item: Any) -> bool:
    return (
        isinstance(item, dict)
        and isinstance(item.get("name"), str)
        and isinstance(item.get("args"), dict)
        and isinstance(item.get("id"), _STR_OR_NONE)
    )


def _is_invalid_tool_call(item: Any) -> bool:
    return isinstance(item, dict) and _is_opt_str(item, "name", "args", "id", "error")


def _is_tool_call_chunk(item: Any) -> bool:
    index = item.get("index") if isinstance(item, dict) else None
    return (
        isinstance(item, dict)
        and _is_opt_str(item, "name", "args", "id")
        and (index is None or (isinstance(index, int) and not isinstance(index, bool)))
    )


def _is_list_of(check: Any) -> Any:
    def is_list_of(value: Any) -> bool:
        if not isinstance(value, list):
            return False
        # a loop, not all(generator): a generator per list costs more than the check of most (0 or 1 item)
        for item in value:  # noqa: SIM110
            if not check(item):
                return False
        return True

    return is_list_of


# Shape checks per field: cheap, and enough that a decoded message has the types its class declares and
# that LangChain's own handling of a hit (text of content blocks, tool calls) cannot fail on it. Encoding
# runs them too, so whatever is written decodes again.
_CHECKS: dict[str, Any] = {
    "content": _is_content,
    "additional_kwargs": lambda v: isinstance(v, dict),
    "response_metadata": lambda v: isinstance(v, dict),
    "name": _is_str_or_none,
    "id": _is_str_or_none,
    "tool_calls": _is_list_of(_is_tool_call),
    "invalid_tool_calls": _is_list_of(_is_invalid_tool_call),
    "tool_call_chunks": _is_list_of(_is_tool_call_chunk),
    "usage_metadata": lambda v: v is None or isinstance(v, dict),
    "chunk_position": _is_str_or_none,
    "tool_call_id": lambda v: isinstance(v, str),
    "status": lambda v: isinstance(v, str),
    "role": lambda v: isinstance(v, str),
    "artifact": lambda v: True,  # plain JSON data by construction
}

# The checks above that are one isinstance, as types: the same test without a call per field.
_TYPES: dict[str, type | tuple[type, ...]] = {
    "additional_kwargs": dict,
    "response_metadata": dict,
    "name": _STR_OR_NONE,
    "id": _STR_OR_NONE,
    "usage_metadata": (dict, type(None)),
    "chunk_position": _STR_OR_NONE,
    "tool_call_id": str,
    "status": str,
    "role": str,
}
_FIELD_SETS: dict[type[BaseMessage], frozenset[str]] = {cls: frozenset(f) for cls, f in _FIELDS.items()}
# The fields without a default (content; a tool message's call id, a chat message's role, a function's name).
_REQUIRED: dict[type[BaseMessage], frozenset[str]] = {
    cls: frozenset(name for name, f in cls.model_fields.items() if f.is_required())
    for cls in _MESSAGE_CLASSES
}


class _Whole:
    """How a message stored with every field of its class is checked and built: no Python call per field.

    The one-isinstance fields are fetched together and checked by ``map(isinstance, ...)`` (all in C); the
    other checks run one by one. The stored order is the class's own when it was written by this version,
    so its dict becomes the instance's ``__dict__`` as it is.
    """

    __slots__ = ("size", "order", "plain", "kinds", "other", "checks", "fast")

    def __init__(self, cls: type[BaseMessage]) -> None:
        fields = _FIELDS[cls]
        self.size = len(fields) + 1  # and "type"
        self.order = tuple(cls.__pydantic_fields__)
        plain = [name for name in fields if name in _TYPES]
        other = [name for name in fields if name not in _TYPES]
        # Each getter raises KeyError for a missing field; "type" last makes it return a tuple even for
        # one name (zip and map stop before it: it is not checked).
        self.plain = operator.itemgetter(*plain, "type")
        self.kinds = tuple(_TYPES[name] for name in plain)
        self.other = operator.itemgetter(*other, "type")
        self.checks = tuple(_CHECKS[name] for name in other)
        self.fast = _FAST_MESSAGES.get(cls)

    def holds(self, data: dict[str, Any]) -> bool:
        """Does `data` (whose "type" is the class's) hold every field and nothing else, each of its type?"""
        if len(data) != self.size:
            return False
        try:
            plain, other = self.plain(data), self.other(data)
        except KeyError:  # as many keys, but not the class's
            return False
        if not all(map(isinstance, plain, self.kinds)):
            return False
        for check, value in zip(self.checks, other, strict=False):  # noqa: SIM110 (as above)
            if not check(value):
                return False
        return True


_WHOLE: dict[type[BaseMessage], _Whole] = {cls: _Whole(cls) for cls in _MESSAGE_CLASSES}


# -- messages ------------------------------------------------------------------------------------------


def encode_message(message: BaseMessage) -> dict[str, Any]:
    """The message's fields as a dict; only the allowlisted message classes (not subclasses) are accepted."""
    fields = _FIELDS.get(type(message))
    if fields is None:
        raise UnsupportedValue(
            f"cannot cache a {type(message).__name__}: only LangChain's own message classes"
        )
    # In the class's field order, "type" among them: a hit then takes the dict as it is (`_Whole`).
    data = {name: getattr(message, name) for name in _WHOLE[type(message)].order}
    for name in fields:
        if not _CHECKS[name](data[name]):
            raise UnsupportedValue(f"cannot cache a {type(message).__name__} with this {name}")
    return data


def decode_message(data: Any) -> BaseMessage:
    """Build a message from `encode_message` data; anything else raises `DecodeError`."""
    if not isinstance(data, dict):
        raise DecodeError("a stored message is a dict")
    kind = data.get("type")
    cls = _BY_TYPE.get(kind) if type(kind) is str else None  # (a list or dict there is unhashable)
    if cls is None:
        raise DecodeError(f"not an allowed message type: {kind!r}")
    whole = _WHOLE[cls]
    if whole.holds(data):  # what encode_message writes: every field
        if whole.fast is not None:
            # The fields were validated when the message was first built and checked here; skipping
            # pydantic's validation is what makes a hit cheap.
            state = dict(data) if tuple(data) == whole.order else {n: data[n] for n in whole.order}
            return _adopt(cls, state, *whole.fast)
    else:
        _check_fields(cls, data)  # raises, naming the field, unless only some fields are stored
        missing = _REQUIRED[cls] - data.keys()  # model_construct would leave them unset: errors later
        if missing:
            raise DecodeError(f"a stored {cls.__name__} has {', '.join(sorted(missing))}")
    fields = _FIELDS[cls]
    return cls.model_construct(**{name: data[name] for name in fields if name in data})


def _check_fields(cls: type[BaseMessage], data: dict[str, Any]) -> None:
    """Raise `DecodeError` for the first stored field `cls` does not have, or whose value is not its type."""
    known = _FIELD_SETS[cls]
    for name, value in data.items():
        if name == "type":
            continue
        if name not in known:
            raise DecodeError(f"unknown {cls.__name__} field {name!r}")
        kind = _TYPES.get(name)  # the plain checks inline: a hit checks every field
        if not (isinstance(value, kind) if kind is not None else _CHECKS[name](value)):
            raise DecodeError(f"bad {cls.__name__}.{name}")


# -- generations (the BaseCache payload) ---------------------------------------------------------------


def encode_generations(generations: Sequence[Generation]) -> dict[str, Any]:
    """``{"g": [...]}``: a chat generation as ``{"m": message, "i": info}``, a text one as ``{"t", "i"}``."""
    if not generations:
        raise UnsupportedValue("cannot cache an empty list of generations")
    out: list[dict[str, Any]] = []
    for gen in generations:
        if isinstance(gen, ChatGeneration):
            out.append({"m": encode_message(gen.message), "i": gen.generation_info})
        elif isinstance(gen, Generation):
            out.append({"t": gen.text, "i": gen.generation_info})
        else:
            raise UnsupportedValue(f"cannot cache a {type(gen).__name__} as a generation")
    return {"g": out}


def decode_generations(value: Any) -> list[Generation]:
    """The generations `encode_generations` stored; anything else raises `DecodeError`."""
    if (
        not isinstance(value, dict)
        or set(value) != {"g"}
        or not isinstance(value["g"], list)
        or not value["g"]
    ):
        raise DecodeError("not a stored list of generations")
    gens: list[Generation] = []
    for item in value["g"]:
        if not isinstance(item, dict):
            raise DecodeError("a stored generation is a dict")
        info = item.get("i")
        if info is not None and not isinstance(info, dict):
            raise DecodeError("generation_info is a dict")
        if "m" in item:
            message = decode_message(item["m"])
            if not isinstance(message.content, str):
                # content blocks: let ChatGeneration derive its text as it did when the answer was made
                gens.append(ChatGeneration(message=message, generation_info=info))
            elif _CHAT_GEN_FAST:
                state = {
                    "text": message.content,
                    "generation_info": info,
                    "type": _CHAT_GEN_TYPE,
                    "message": message,
                }
                gens.append(_adopt(ChatGeneration, state, _CHAT_GEN_PASSED, _CHAT_GEN_EXTRA))
            else:
                gens.append(
                    ChatGeneration.model_construct(
                        text=message.content, message=message, generation_info=info
                    )
                )
        elif isinstance(item.get("t"), str):
            if _GEN_FAST:  # what validating leaves: the text and info were checked above
                state = {"text": item["t"], "generation_info": info, "type": _GEN_TYPE}
                gens.append(_adopt(Generation, state, _GEN_PASSED, _GEN_EXTRA))
            else:
                gens.append(Generation(text=item["t"], generation_info=info))
        else:
            raise DecodeError("a stored generation holds a message or a text")
    return gens


# -- any chain output (CachedRunnable) -----------------------------------------------------------------

_TAG = "$t"
# Deeper values are not cached, and deeper stored data is bad data: both sides stay far from Python's
# recursion limit, however deep the call stack of the chain that reads or writes them.
MAX_DEPTH = 100


def encode_value(value: Any, _depth: int = 0) -> Any:
    """JSON data for a chain's input or output: JSON types, tuples, dicts, messages and documents.

    Objects become ``{"$t": kind, "v": ...}``; a plain dict that happens to hold ``"$t"`` is wrapped, so
    decoding never mistakes data for an object. Anything else raises `UnsupportedValue`, as does nesting
    deeper than `MAX_DEPTH`.
    """
    if _depth > MAX_DEPTH:
        raise UnsupportedValue(f"cannot cache a value nested more than {MAX_DEPTH} levels deep")
    depth = _depth + 1
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UnsupportedValue("cannot cache a NaN or infinite float")
        return value
    if isinstance(value, list):
        return [encode_value(item, depth) for item in value]
    if isinstance(value, tuple):
        return {_TAG: "tuple", "v": [encode_value(item, depth) for item in value]}
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise UnsupportedValue(f"cannot cache a dict with a {type(key).__name__} key")
            out[key] = encode_value(item, depth)
        if isinstance(value, AddableDict):  # streamed dict chunks: kept addable for the replay
            return {_TAG: "adict", "v": out}
        return {_TAG: "dict", "v": out} if _TAG in out else out
    if isinstance(value, BaseMessage):
        data = encode_message(value)
        return {
            _TAG: "msg",
            "v": {k: encode_value(v, depth) if k == "artifact" else v for k, v in data.items()},
        }
    if type(value) is Document:
        return {
            _TAG: "doc",
            "v": {
                "id": value.id,
                "page_content": value.page_content,
                "metadata": encode_value(value.metadata, depth),
            },
        }
    raise UnsupportedValue(f"cannot cache a {type(value).__name__}")


def decode_value(data: Any, _depth: int = 0) -> Any:
    """The value `encode_value` stored; anything else raises `DecodeError`."""
    if _depth > MAX_DEPTH:
        raise DecodeError(f"stored data nested more than {MAX_DEPTH} levels deep")
    depth = _depth + 1
    if isinstance(data, list):
        return [decode_value(item, depth) for item in data]
    if not isinstance(data, dict):
        return data
    tag = data.get(_TAG)
    if tag is None:
        return {key: decode_value(item, depth) for key, item in data.items()}
    inner = data.get("v")
    if tag == "dict" and isinstance(inner, dict):
        return {key: decode_value(item, depth) for key, item in inner.items()}
    if tag == "adict" and isinstance(inner, dict):
        return AddableDict({key: decode_value(item, depth) for key, item in inner.items()})
    if tag == "tuple" and isinstance(inner, list):
        return tuple(decode_value(item, depth) for item in inner)
    if tag == "msg" and isinstance(inner, dict):
        if "artifact" in inner:
            inner = {**inner, "artifact": decode_value(inner["artifact"], depth)}
        return decode_message(inner)
    if tag == "doc" and isinstance(inner, dict):
        doc_id, text, metadata = (
            inner.get("id"),
            inner.get("page_content"),
            decode_value(inner.get("metadata"), depth),
        )
        if not _is_str_or_none(doc_id) or not isinstance(text, str) or not isinstance(metadata, dict):
            raise DecodeError("bad stored document")
        return Document(id=doc_id, page_content=text, metadata=metadata)
    raise DecodeError(f"not an allowed stored object: {tag!r}")
