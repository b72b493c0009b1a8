"""Errors the cache raises on purpose.

Lookups and writes never raise these into a user's LLM call: a backend that is down turns into a miss or a
dropped write. Invalidations do raise, because a caller who asked for an invalidation must know when the
cache may still hold stale answers. A decoder raises `DecodeError` for stored data it cannot read; the cache
turns it into a miss.
"""

from __future__ import annotations

__all__ = ["CacheError", "DecodeError", "InvalidationError"]


class CacheError(Exception):
    """Base class of the cache's own errors."""


class InvalidationError(CacheError):
    """An invalidation could not be carried out; the cache may still serve what it meant to remove.

    Example:
        >>> try:
        ...     cache.invalidate_source("doc-1")
        ... except InvalidationError:
        ...     alert("cache may be stale")  # doctest: +SKIP
    """


class DecodeError(ValueError):
    """Raised by a decoder for stored data that is not a value it wrote: a miss, removed and counted as bad.

    Any other exception from a decoder is a bug: logged once, with its traceback, and still a miss.

    Example:
        >>> def decode(value: object) -> str:
        ...     if not isinstance(value, str):
        ...         raise DecodeError("a stored answer is a string")
        ...     return value
        >>> cache.lookup(key, decode=decode)  # doctest: +SKIP
    """
