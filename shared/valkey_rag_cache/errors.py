"""Errors the cache raises on purpose.

Lookups and writes never raise these into a user's LLM call: a backend that is down turns into a miss or a
dropped write. Invalidations do raise, because a caller who asked for an invalidation must know when the
cache may still hold stale answers.
"""

from __future__ import annotations

__all__ = ["CacheError", "InvalidationError"]


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
