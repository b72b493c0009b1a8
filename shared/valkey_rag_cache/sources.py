"""Sources: the documents an answer was built from, and the scope that attaches them to model calls."""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from . import slots

__all__ = ["Source", "SourceScope", "as_sources", "scoped_sources", "source_from"]


@dataclass(frozen=True, slots=True, init=False)
class Source:
    """One document an answer depends on, and its content type (which sets the answer's TTL).

    >>> Source("handbook.md", "documentation")
    Source(id='handbook.md', content_type='documentation')
    """

    id: str
    content_type: str | None = None

    def __init__(self, id: str, content_type: str | None = None) -> None:
        # Its slots set directly (`slots`): a write makes one per source, and a frozen dataclass's own
        # __init__ costs twice as much.
        if not isinstance(id, str):
            raise TypeError(f"a source id is a string, got {type(id).__name__}")
        if not id:
            raise ValueError("a source id must not be empty")
        _set_id(self, id)
        _set_content_type(self, content_type)


_set_id, _set_content_type = slots.setters(Source)


def source_from(id: str, metadata: Mapping[str, Any] | None, content_type_key: str | None) -> Source:
    """The `Source` of a retrieved document: its id, typed by ``metadata[content_type_key]``.

    Every adapter reads a document's content type here: a non-empty string, else none (the policy's default).

    >>> source_from("faq.md", {"content_type": "static", "page": 3}, "content_type")
    Source(id='faq.md', content_type='static')
    >>> source_from("feed", {"content_type": 7}, "content_type"), source_from("feed", {}, None)
    (Source(id='feed', content_type=None), Source(id='feed', content_type=None))
    """
    content_type = (metadata or {}).get(content_type_key) if content_type_key else None
    return Source(id, content_type if isinstance(content_type, str) and content_type else None)


def as_sources(
    items: Iterable[Source | str] | Source | str | None, content_type: str | None = None
) -> tuple[Source, ...]:
    """Normalize ids or `Source`s into a de-duplicated tuple, keeping first occurrences in order.

    >>> as_sources(["a", Source("b", "realtime"), "a"])
    (Source(id='a', content_type=None), Source(id='b', content_type='realtime'))
    """
    if items is None:
        return ()
    if isinstance(items, str | Source):
        items = [items]
    seen: dict[str, Source] = {}
    for item in items:
        src = item if isinstance(item, Source) else Source(item, content_type)
        if src.id not in seen:
            seen[src.id] = src
    return tuple(seen.values())


_SCOPE: contextvars.ContextVar[tuple[Source, ...]] = contextvars.ContextVar(
    "valkey_rag_cache_sources", default=()
)


def scoped_sources() -> tuple[Source, ...]:
    """The sources attached by enclosing `SourceScope`s in this context."""
    return _SCOPE.get()


class SourceScope:
    """Attaches sources to every cached call made inside it, in sync and async code.

    Example:
        >>> with cache.sources(["doc-1", "doc-2"], content_type="documentation"):  # doctest: +SKIP
        ...     llm.invoke(prompt_built_from_those_docs)
    """

    def __init__(self, ids: Iterable[Source | str] | Source | str, content_type: str | None = None) -> None:
        self._sources = as_sources(ids, content_type)
        self._tokens: list[contextvars.Token[tuple[Source, ...]]] = []

    @property
    def sources(self) -> tuple[Source, ...]:
        return self._sources

    def __enter__(self) -> SourceScope:
        outer = _SCOPE.get()
        self._tokens.append(_SCOPE.set(as_sources([*outer, *self._sources]) if outer else self._sources))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        _SCOPE.reset(self._tokens.pop())

    async def __aenter__(self) -> SourceScope:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __iter__(self) -> Iterator[Source]:
        return iter(self._sources)
