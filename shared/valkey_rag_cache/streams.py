"""Streams stored only when they complete, for every adapter: chunks pass through as they come, and the
answer is written after the last one.

A stream that fails, or that its reader leaves half-read (``close()``, ``break``, a generator dropped), is
never stored: its chunks are not an answer. What to store is the adapter's (``complete`` gets every chunk);
what the lookup saw must be taken before the stream is handed out, since it may be read in another context.

Example:
    >>> stored = []
    >>> list(recorded(iter("abc"), stored.append))
    ['a', 'b', 'c']
    >>> half = recorded(iter("xyz"), stored.append)
    >>> next(half), half.close(), stored
    ('x', None, [['a', 'b', 'c']])
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Generator, Iterable
from typing import TypeVar

__all__ = ["arecorded", "recorded"]

T = TypeVar("T")


def recorded(
    chunks: Iterable[T], complete: Callable[[list[T]], object], kept: list[T] | None = None
) -> Generator[T, None, None]:
    """Yield each of `chunks`; once they ran out (not on an error or an early close), call `complete`.

    `complete` gets every chunk, in order, in `kept` (a new list unless given: pass one to read the chunks
    afterwards, whatever the outcome).
    """
    kept = [] if kept is None else kept
    for chunk in chunks:
        kept.append(chunk)
        yield chunk
    # Only reached when the stream ran to its end: an exception, or GeneratorExit at the yield, skips it.
    complete(kept)


async def arecorded(
    chunks: AsyncIterable[T], complete: Callable[[list[T]], Awaitable[object]], kept: list[T] | None = None
) -> AsyncGenerator[T, None]:
    """The async twin of `recorded`: `complete` is awaited once the stream ran to its end."""
    kept = [] if kept is None else kept
    async for chunk in chunks:
        kept.append(chunk)
        yield chunk
    await complete(kept)
