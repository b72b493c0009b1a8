"""`CacheOperations`: the core's invalidation and housekeeping methods, for adapters that wrap a core.

An adapter class sets ``self.core`` and inherits these, so LangChain's and LlamaIndex's caches expose the same
operations with the same semantics, and a source invalidated through one is invalidated for the other.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .cache import AnswerCache
from .doctor import DoctorReport
from .sources import Source, SourceScope

__all__ = ["CacheOperations"]


class CacheOperations:
    """Mixin: delegates to ``self.core`` (an `AnswerCache`)."""

    core: AnswerCache

    @staticmethod
    def make_core(core: AnswerCache | None = None, /, **options: Any) -> AnswerCache:
        """The given core, or a new `AnswerCache` from the options (None values mean the core's defaults).

        >>> CacheOperations.make_core(url=None, namespace="docs", timeout=None)
        AnswerCache(prefix='llmcache', namespace='docs')
        """
        given = {k: v for k, v in options.items() if v is not None}
        if core is None:
            return AnswerCache(given.pop("url", None), **given)
        if any(
            k not in ("namespace", "prefix") or v not in ("default", "llmcache") for k, v in given.items()
        ):
            raise TypeError("pass either core= or the connection and cache options, not both")
        return core

    def __repr__(self) -> str:
        return f"{type(self).__name__}(prefix={self.core.schema.prefix!r}, namespace={self.core.namespace!r})"

    def invalidate_source(self, source_id: str) -> int:
        """Invalidate and delete every cached answer built on `source_id`; returns how many were deleted."""
        return self.core.invalidate_source(source_id)

    async def ainvalidate_source(self, source_id: str) -> int:
        return await self.core.ainvalidate_source(source_id)

    def invalidate_sources(self, source_ids: Iterable[str]) -> int:
        return self.core.invalidate_sources(source_ids)

    async def ainvalidate_sources(self, source_ids: Iterable[str]) -> int:
        return await self.core.ainvalidate_sources(source_ids)

    def invalidate_namespace(self, namespace: str | None = None) -> None:
        """Invalidate a namespace and everything below it (default: this cache's own)."""
        self.core.invalidate_namespace(namespace)

    async def ainvalidate_namespace(self, namespace: str | None = None) -> None:
        await self.core.ainvalidate_namespace(namespace)

    def invalidate_all(self) -> None:
        """Bump the version: nothing cached before is served again."""
        self.core.invalidate_all()

    async def ainvalidate_all(self) -> None:
        await self.core.ainvalidate_all()

    def register(self) -> bool:
        """List this cache's namespace tree in the index of groups, so global invalidations reach it."""
        return self.core.register()

    def dependents(self, source_id: str) -> list[str]:
        """Keys of the live cached answers built on `source_id`."""
        return self.core.dependents(source_id)

    async def adependents(self, source_id: str) -> list[str]:
        return await self.core.adependents(source_id)

    def purge(self, count: int = 1000) -> int:
        """Reclaim the memory of invalidated entries and dead dependency links (SCAN + UNLINK in batches)."""
        return self.core.purge(count)

    async def apurge(self, count: int = 1000) -> int:
        return await self.core.apurge(count)

    def stats(self) -> dict[str, Any]:
        """Hits, misses, stale rejections, writes, invalidations per namespace, and this process's errors."""
        return self.core.stats()

    async def astats(self) -> dict[str, Any]:
        return await self.core.astats()

    def doctor(self) -> DoctorReport:
        return self.core.doctor()

    async def adoctor(self) -> DoctorReport:
        return await self.core.adoctor()

    def sources(
        self, ids: Iterable[Source | str] | Source | str, content_type: str | None = None
    ) -> SourceScope:
        """Attach sources to the model calls made inside this block (sync or async)."""
        return self.core.sources(ids, content_type)
