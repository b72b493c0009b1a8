"""What goes into a key: everything that changes an LLM's output, as plain JSON for the core to digest.

The inner LLM's class, metadata and settings (never its credentials), the messages with their roles and
blocks, the prompt, and call kwargs such as tools. Objects JSON cannot hold are described by what they
mean (a tool by its name, description and parameter schema; a function by its name and code); anything
else by its ``repr``, which at worst turns a would-be hit into a miss, never into a wrong hit.

Example:
    >>> from llama_index.core.llms import MockLLM
    >>> llm_identity(MockLLM(max_tokens=5))["class"]
    'llama_index.core.llms.mock.MockLLM'
"""

from __future__ import annotations

import enum
import hashlib
import re
from functools import lru_cache
from types import CodeType, FunctionType
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, LLMMetadata, MessageRole, TextBlock
from llama_index.core.llms import LLM
from pydantic import BaseModel, SecretBytes, SecretStr
from pydantic_core import to_jsonable_python

from valkey_rag_cache.digests import json_field

__all__ = [
    "IdentityMemo",
    "identity_token",
    "jsonable",
    "llm_identity",
    "messages_json",
    "qualified",
    "settings_of",
]

# Settings that do not change what a model says, or must never be hashed into a key.
_IGNORED = frozenset(
    {"callback_manager", "rate_limiter", "embeddings_cache", "embed_batch_size", "num_workers"}
)
_SECRET = re.compile(r"(^|_)(api_?key|key|token|secret|password|passwd|credentials?|auth)$", re.IGNORECASE)
# Values pydantic's JSON conversion returns as they are: taken without calling it, which is most settings.
_SCALARS = frozenset({str, int, float, bool, type(None)})


def qualified(obj: Any) -> str:
    """``module.QualifiedName`` of a class or function."""
    return f"{getattr(obj, '__module__', '') or ''}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"


def _describe(obj: Any) -> Any:
    """JSON for what JSON cannot hold."""
    meta = getattr(obj, "metadata", None)
    if meta is not None and hasattr(meta, "get_parameters_dict") and hasattr(meta, "name"):
        # A LlamaIndex tool: what the model sees of it.
        return {
            "tool": meta.name,
            "description": getattr(meta, "description", None),
            "parameters": jsonable(meta.get_parameters_dict()),
            "return_direct": getattr(meta, "return_direct", None),
        }
    if isinstance(obj, type):
        if issubclass(obj, BaseModel):
            return {"class": qualified(obj), "schema": jsonable(obj.model_json_schema())}
        return {"class": qualified(obj)}
    if isinstance(obj, SecretStr | SecretBytes):
        return None
    code = getattr(obj, "__code__", None)
    if code is not None:
        # Two lambdas in one module share a name: their code tells them apart.
        return {"function": qualified(obj), "code": _code_digest(code)}
    if callable(obj) and hasattr(obj, "__qualname__"):
        return {"function": qualified(obj)}
    return {"repr": repr(obj)}


@lru_cache(maxsize=1024)
def _code_digest(code: CodeType) -> str:
    # Code objects are immutable, and equal ones have equal bytecode and constants: one digest each.
    return hashlib.blake2b(code.co_code + repr(code.co_consts).encode(), digest_size=12).hexdigest()


def jsonable(value: Any) -> Any:
    """`value` as JSON data (pydantic models as their JSON dump, other objects described)."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is dict and not value:  # a call's kwargs, most of the time
        return {}
    return to_jsonable_python(value, fallback=_describe, serialize_unknown=False)


# -- chat messages: the common kind (a role, text blocks, no extra kwargs) read directly --------------------


def _fields_are(cls: type[BaseModel], names: tuple[str, ...]) -> bool:
    return tuple(cls.model_fields) == names and not cls.model_computed_fields and not cls.model_config


def _plain_message_json(message: Any) -> dict[str, Any] | None:
    """`jsonable` of a `ChatMessage` that holds only text blocks and no extra kwargs, without pydantic's
    serializer (a Python call per message); None for any other message, which `jsonable` then reads."""
    if type(message) is not ChatMessage:
        return None
    state = message.__dict__
    role, extra, blocks = state.get("role"), state.get("additional_kwargs"), state.get("blocks")
    if type(role) is not MessageRole or type(extra) is not dict or extra or type(blocks) is not list:
        return None
    out = []
    for block in blocks:
        if type(block) is not TextBlock:
            return None
        fields = block.__dict__
        kind, text = fields.get("block_type"), fields.get("text")
        if type(kind) is not str or type(text) is not str:
            return None
        out.append({"block_type": kind, "text": text})
    return {"role": role.value, "additional_kwargs": {}, "blocks": out}


def _fast_messages_agree() -> bool:
    # Only while the classes are what this reading assumes: the same fields, serialized as pydantic does.
    if not (
        _fields_are(ChatMessage, ("role", "additional_kwargs", "blocks"))
        and _fields_are(TextBlock, ("block_type", "text"))
    ):
        return False
    samples = [
        ChatMessage(role=MessageRole.TOOL, blocks=[TextBlock(text="a"), TextBlock(text="")]),
        ChatMessage(content="b"),
    ]
    return all(_plain_message_json(m) == to_jsonable_python(m) for m in samples)


_FAST_MESSAGES = _fast_messages_agree()


def messages_json(messages: Any) -> list[Any]:
    """``jsonable(list(messages))``: plain chat messages are read directly (most calls hold only those).

    >>> messages_json([ChatMessage(role="user", content="Hi")])
    [{'role': 'user', 'additional_kwargs': {}, 'blocks': [{'block_type': 'text', 'text': 'Hi'}]}]
    """
    if not _FAST_MESSAGES:
        return jsonable(list(messages))  # type: ignore[no-any-return]
    out = []
    for message in messages:
        data = _plain_message_json(message)
        out.append(data if data is not None else jsonable(message))
    return out


@lru_cache(maxsize=256)
def _setting_names(cls: type[BaseModel]) -> tuple[str, ...]:
    """The fields of `cls` that go into a key, sorted: not the ignored ones, nor any named like a secret."""
    return tuple(
        name for name in sorted(cls.model_fields) if name not in _IGNORED and not _SECRET.search(name)
    )


def settings_of(model: BaseModel) -> dict[str, Any]:
    """The fields of a pydantic component (an LLM, embedding model, postprocessor), never its credentials."""
    settings: dict[str, Any] = {}
    for name in _setting_names(type(model)):
        value = getattr(model, name, None)
        if type(value) in _SCALARS:
            settings[name] = value
        elif type(value) is FunctionType:  # prompt formatters: described as pydantic's fallback would
            settings[name] = _describe(value)
        elif isinstance(value, SecretStr | SecretBytes):
            continue
        elif isinstance(value, BaseModel) and not isinstance(value, type):
            # A component inside a component (the LLM of a reranker): its credentials stay out too.
            settings[name] = {"class": qualified(type(value)), "settings": settings_of(value)}
        else:
            settings[name] = jsonable(value)
    return settings


def llm_identity(llm: LLM) -> dict[str, Any]:
    """The class, metadata and settings of `llm`: a different model or setting is a different key."""
    return {
        "class": qualified(type(llm)),
        "metadata": jsonable(llm.metadata),
        "settings": settings_of(llm),
    }


# -- the identity of an LLM, kept between calls while nothing it is built from changed ---------------------

_DEPTH = 32


class _Unseen(Exception):
    """A value whose changes a token cannot see (an object, a set, a class): the identity is rebuilt."""


def _data_token(value: Any, depth: int = 0) -> Any:
    """What `jsonable` reads of `value`, as a value equal only to the token of the same data.

    Types are part of it (``1``, ``1.0`` and ``True`` are equal in Python, not in JSON); containers are
    read through, so a dict changed in place gives another token.
    """
    kind = type(value)
    if kind in _SCALARS:
        return (kind, value)
    if depth > _DEPTH:
        raise _Unseen
    if kind is dict:
        return (kind, tuple((_data_token(k, depth + 1), _data_token(v, depth + 1)) for k, v in value.items()))
    if kind is list or kind is tuple:
        return (kind, tuple(_data_token(v, depth + 1) for v in value))
    if kind is FunctionType:  # described by name and code (`_describe`)
        return (kind, value, value.__code__, value.__module__, value.__qualname__)
    if isinstance(value, enum.Enum):
        return (kind, value, _data_token(value.value, depth + 1))
    raise _Unseen


def _settings_token(model: BaseModel, out: list[Any], depth: int = 0) -> None:
    """Appends what `settings_of` reads of `model`, read the way it reads it.

    Flat: each value adds its type, then one item (scalars: the value itself), so two lists of one class
    are equal only item by item.
    """
    kind = type(model)
    if depth > _DEPTH:
        raise _Unseen
    out.append(kind)
    for name in _setting_names(kind):
        value: Any = getattr(model, name, None)
        vkind = type(value)
        out.append(vkind)
        if vkind in _SCALARS:
            out.append(value)
        elif vkind is FunctionType:
            out.append((value, value.__code__, value.__module__, value.__qualname__))
        elif isinstance(value, SecretStr | SecretBytes):
            out.append(None)  # never in a key: only that it is a secret
        elif isinstance(value, BaseModel) and not isinstance(value, type):
            _settings_token(value, out, depth + 1)
        elif isinstance(value, enum.Enum) and type(value._value_) in _SCALARS:
            out.append(value)  # a member is itself (compared by identity), and its value is plain
        else:
            out.append(_data_token(value))


def identity_token(llm: LLM) -> list[Any] | None:
    """A snapshot of everything `llm_identity` reads, or None when some of it cannot be snapshot.

    Equal tokens of one LLM object mean an equal identity: its class, each setting (scalars by type and
    ``==``, containers read through, formatters by their code) and its metadata (read anew: it is a
    property). None for a setting held in an object other than plain data or a pydantic component, and for
    metadata of a subclass of `LLMMetadata`.
    """
    meta = llm.metadata
    if type(meta) is not LLMMetadata:
        return None
    out: list[Any] = []
    try:
        _settings_token(llm, out)
        for value in meta.__dict__.values():
            kind = type(value)
            out.append(kind)
            if kind in _SCALARS or (isinstance(value, enum.Enum) and type(value._value_) in _SCALARS):
                out.append(value)
            else:
                out.append(_data_token(value))
    except _Unseen:
        return None
    return out


class IdentityMemo:
    """The JSON text of an LLM's identity (`llm_identity`), rebuilt only when its `identity_token` changed.

    Example:
        >>> from llama_index.core.llms import MockLLM
        >>> memo, llm = IdentityMemo(), MockLLM(max_tokens=5)
        >>> first = memo.text(llm)
        >>> llm.max_tokens = 6
        >>> memo.text(llm) != first
        True
    """

    __slots__ = ("_state",)

    def __init__(self) -> None:
        self._state: tuple[LLM, list[Any], str] | None = None

    def text(self, llm: LLM) -> str:
        token = identity_token(llm)
        state = self._state  # one read: another thread may replace it
        if token is not None and state is not None and state[0] is llm and state[1] == token:
            return state[2]
        text = json_field(llm_identity(llm))
        # Kept only if nothing changed while it was built (a setting reassigned by another thread).
        if token is not None and identity_token(llm) == token:
            self._state = (llm, token, text)
        return text
