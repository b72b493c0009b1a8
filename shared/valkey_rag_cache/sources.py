"""Sources: the documents an answer was built from, and the scope that attaches them to model calls."""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType

__all__ = ["Source", "SourceScope", "as_sources", "scoped_sources"]


@dataclass(frozen=True, slots=True)
class Source:
    """One document an answer depends on, and its content type (which sets the answer's TTL).

    >>> Source("handbook.md", "documentation")
    Source(id='handbook.md', content_type='documentation')
    """

    id: str
    content_type: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str):
            raise TypeError(f"a source id is a string, got {type(self.id).__name__}")
        if not self.id:
            raise ValueError("a source id must not be empty")


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
        self._tokens.append(_SCOPE.set(as_sources([*_SCOPE.get(), *self._sources])))
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
