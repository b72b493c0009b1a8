"""LlamaIndex responses to JSON and back: data only, rebuilt with pydantic ``model_validate`` of known types.

Nothing stored can name a class: a chat entry is always a `ChatResponse`, a completion entry always a
`CompletionResponse`, a source node a `TextNode` or `IndexNode`. The provider's ``raw`` object is dropped
(it is often not serializable and may hold request details). Nothing decoded may make anyone read a file or
a URL later: a message keeps only text, thinking and tool-call blocks, and a source node holds no image
path or URL. Anything else raises `DecodeError` (the core's rule: a miss, and a discarded entry counted as
bad). An encoder returns None for a response that cannot be cached (it is then not stored).

Example:
    >>> from llama_index.core.base.llms.types import CompletionResponse
    >>> entry = encode_completion(CompletionResponse(text="Paris"))
    >>> decode_completion(entry).response.text
    'Paris'
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    TextBlock,
    ThinkingBlock,
    ToolCallBlock,
)
from llama_index.core.base.response.schema import Response
from llama_index.core.schema import IndexNode, NodeWithScore, TextNode
from pydantic import BaseModel
from pydantic_core import PydanticSerializationError

from valkey_rag_cache.errors import DecodeError
from valkey_rag_cache.telemetry import warn_once

__all__ = [
    "Answer",
    "LLMEntry",
    "decode_answer",
    "decode_chat",
    "decode_completion",
    "encode_answer",
    "encode_chat",
    "encode_completion",
    "replay_chat",
    "replay_completion",
]

R = TypeVar("R", ChatResponse, CompletionResponse)
M = TypeVar("M", bound=BaseModel)

log = logging.getLogger("llamaindex_valkey_cache")

# Blocks a cached message may hold. Media blocks are left out: their ``path`` / ``url`` make whoever
# resolves them read a local file or fetch a URL, and their validators already touch the filesystem.
_BLOCKS = (TextBlock, ThinkingBlock, ToolCallBlock)
_BLOCK_TYPES = frozenset(cls.model_fields["block_type"].default for cls in _BLOCKS)


def _not_cached(reason: object) -> None:
    # Reasons name types, never content: a bounded set of kinds, each warned about once.
    warn_once(log, f"uncachable:{reason}", "llamaindex_valkey_cache: not caching this answer: %s", reason)


@dataclass(frozen=True, slots=True)
class LLMEntry(Generic[R]):
    """A cached LLM call: its final response and, for a stream, the deltas it arrived in."""

    response: R
    deltas: tuple[str, ...] | None


def _dump(response: ChatResponse | CompletionResponse) -> dict[str, Any] | None:
    # `raw` is the provider's own object: not ours to store, and often not serializable at all.
    try:
        return response.model_copy(update={"raw": None}).model_dump(mode="json")
    except PydanticSerializationError as exc:  # provider objects in additional_kwargs
        _not_cached(exc)
        return None


def encode_chat(response: ChatResponse, deltas: Sequence[str] | None = None) -> dict[str, Any] | None:
    """The stored form of a chat response, or None when it cannot be cached (media blocks, objects)."""
    kinds = {type(block).__name__ for block in response.message.blocks if not isinstance(block, _BLOCKS)}
    if kinds:
        _not_cached(f"it holds {', '.join(sorted(kinds))}")
        return None
    dumped = _dump(response)
    if dumped is None:
        return None
    return {"chat": dumped, "deltas": list(deltas) if deltas is not None else None}


def encode_completion(
    response: CompletionResponse, deltas: Sequence[str] | None = None
) -> dict[str, Any] | None:
    dumped = _dump(response)
    if dumped is None:
        return None
    return {"completion": dumped, "deltas": list(deltas) if deltas is not None else None}


def _deltas(value: dict[str, Any]) -> tuple[str, ...] | None:
    deltas = value.get("deltas")
    if deltas is None:
        return None
    if not isinstance(deltas, list) or not all(isinstance(d, str) for d in deltas):
        raise DecodeError("deltas must be a list of strings")
    return tuple(deltas)


def _validate(model: type[M], value: Any) -> M:
    """`model` rebuilt from stored data; data it does not accept is a `DecodeError`."""
    try:
        return model.model_validate(value)
    except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
        raise DecodeError(f"not a stored {model.__name__}") from exc


def _validated(model: type[R], value: Any, field: str) -> LLMEntry[R]:
    if not isinstance(value, dict) or not isinstance(value.get(field), dict):
        raise DecodeError(f"not a stored {field} entry")
    return LLMEntry(_validate(model, value[field]), _deltas(value))


def _plain_message(response: Any) -> bool:
    """Checked before validation: `ImageBlock.path` is a `FilePath`, which validating already stats."""
    message = response.get("message") if isinstance(response, dict) else None
    if not isinstance(message, dict) or set(message) - {"role", "additional_kwargs", "blocks"}:
        return False
    extra = message.get("additional_kwargs", {})
    if not isinstance(extra, dict) or "images" in extra:  # legacy images: resolved (read) on validation
        return False
    blocks = message.get("blocks", [])
    return isinstance(blocks, list) and all(
        isinstance(b, dict) and b.get("block_type") in _BLOCK_TYPES for b in blocks
    )


def decode_chat(value: Any) -> LLMEntry[ChatResponse]:
    """The chat entry `encode_chat` stored; anything else raises `DecodeError`."""
    if not isinstance(value, dict) or not _plain_message(value.get("chat")):
        raise DecodeError("not a stored chat response with text, thinking and tool-call blocks only")
    entry = _validated(ChatResponse, value, "chat")
    if not all(isinstance(b, _BLOCKS) for b in entry.response.message.blocks):
        raise DecodeError("a stored chat response holds text, thinking and tool-call blocks only")
    return entry


def decode_completion(value: Any) -> LLMEntry[CompletionResponse]:
    """The completion entry `encode_completion` stored; anything else raises `DecodeError`."""
    return _validated(CompletionResponse, value, "completion")


def replay_chat(entry: LLMEntry[ChatResponse]) -> list[ChatResponse]:
    """The chunks of a stream: cumulative text with each delta, and the final response last."""
    final = entry.response
    role = final.message.role
    return _replay(
        entry,
        final.message.content,
        lambda text, delta: ChatResponse(message=ChatMessage(role=role, content=text), delta=delta),
    )


def replay_completion(entry: LLMEntry[CompletionResponse]) -> list[CompletionResponse]:
    return _replay(entry, entry.response.text, lambda text, delta: CompletionResponse(text=text, delta=delta))


def _replay(entry: LLMEntry[R], final_text: str | None, chunk: Callable[[str, str], R]) -> list[R]:
    final = entry.response
    deltas = entry.deltas if entry.deltas is not None else (final.delta or final_text or "",)
    if not deltas:
        return [final]
    chunks: list[R] = []
    text = ""
    for delta in deltas[:-1]:
        text += delta
        chunks.append(chunk(text, delta))
    chunks.append(final.model_copy(update={"delta": deltas[-1]}))
    return chunks


# Node classes a cached answer may hold. Anything else (an `ImageNode` with its image path or URL, a
# document...) is stored as the TextNode it reads as; an `IndexNode` without the live object it points to.
_NODE_CLASSES: dict[str, type[TextNode]] = {cls.class_name(): cls for cls in (TextNode, IndexNode)}


def _encode_node(item: NodeWithScore) -> dict[str, Any]:
    node = item.node
    if type(node) is IndexNode:
        node = node.model_copy(update={"obj": None})  # a retriever or query engine: not data
    elif type(node) is not TextNode:
        node = TextNode(
            id_=node.node_id,
            text=node.get_content(),
            metadata=dict(node.metadata),
            relationships=dict(node.relationships),
        )
    dumped = node.model_dump(mode="json", exclude={"embedding"})
    return {"class": node.class_name(), "node": dumped, "score": item.score}


def _decode_node(value: Any) -> NodeWithScore:
    if not isinstance(value, dict) or not isinstance(value.get("node"), dict):
        raise DecodeError("a source node is an object")
    name = value.get("class")
    cls = _NODE_CLASSES.get(name) if type(name) is str else None  # (a list or dict there is unhashable)
    if cls is None:
        raise DecodeError(f"unknown node class {name!r}")
    if value["node"].get("obj") is not None:
        raise DecodeError("a cached node points to no object")
    score = value.get("score")
    if score is not None and (not isinstance(score, int | float) or isinstance(score, bool)):
        raise DecodeError("a score is a number")
    return NodeWithScore(node=_validate(cls, value["node"]), score=score)


def encode_answer(
    text: str, source_nodes: Sequence[NodeWithScore], metadata: Any, tokens: Sequence[str] | None
) -> dict[str, Any] | None:
    """A query engine's answer: its text, source nodes (without embeddings), JSON metadata, stream tokens.

    None when a node cannot be stored as JSON (objects in its metadata): the answer is then not cached.
    """
    try:
        nodes = [_encode_node(n) for n in source_nodes]
    except PydanticSerializationError as exc:
        _not_cached(exc)
        return None
    return {
        "text": text,
        "nodes": nodes,
        "metadata": _json_metadata(metadata),
        "tokens": list(tokens) if tokens is not None else None,
    }


@dataclass(frozen=True, slots=True)
class Answer:
    text: str
    source_nodes: list[NodeWithScore]
    metadata: dict[str, Any] | None
    tokens: tuple[str, ...] | None

    def response(self) -> Response:
        return Response(
            self.text, list(self.source_nodes), dict(self.metadata) if self.metadata is not None else None
        )


def decode_answer(value: Any) -> Answer:
    """The answer `encode_answer` stored; anything else raises `DecodeError`."""
    if not isinstance(value, dict) or not isinstance(value.get("text"), str):
        raise DecodeError("not a stored answer")
    nodes = value.get("nodes")
    metadata = value.get("metadata")
    tokens = value.get("tokens")
    if not isinstance(nodes, list) or (metadata is not None and not isinstance(metadata, dict)):
        raise DecodeError("a stored answer has a list of nodes and dict metadata")
    if tokens is not None and (not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens)):
        raise DecodeError("stored tokens are a list of strings")
    return Answer(
        value["text"],
        [_decode_node(n) for n in nodes],
        metadata,
        tuple(tokens) if tokens is not None else None,
    )


def _json_metadata(metadata: Any) -> dict[str, Any] | None:
    """Response metadata keeps what is plain JSON; per-node metadata is kept with the nodes anyway."""
    if not isinstance(metadata, dict):
        return None
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if isinstance(key, str) and _is_json(value):
            out[key] = value
    return out


def _is_json(value: Any, depth: int = 0) -> bool:
    if depth > 32:
        return False
    if value is None or isinstance(value, str | bool | int):
        return True
    if isinstance(value, float):
        return value == value and value not in (float("inf"), float("-inf"))
    if isinstance(value, list | tuple):
        return all(_is_json(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v, depth + 1) for k, v in value.items())
    return False
