"""Semantic matching for LlamaIndex: `CachedQueryEngine(..., embed_model=...)` matches queries by similarity.

The query string is the question; the engine's shape (retriever filters, ids, ``top_k``, synthesizer,
prompts, LLM), its ``name`` and the query bundle's custom embedding strings and image are exact and make the
partition: two engines, tenants or filters never share a semantic hit. Each candidate passes the look-alike
guard and is validated like an exact hit (sources, namespaces, version); an exact match wins.

Example:
    >>> engine = CachedQueryEngine(index.as_query_engine(), cache=cache, embed_model=Settings.embed_model,
    ...                            similarity_threshold=0.88)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from llama_index.core.base.embeddings.base import BaseEmbedding

from valkey_rag_cache import EntryKey, Seen, Source
from valkey_rag_cache.semantic import LookalikeGuard, SemanticCache, SemanticQuery, Verifier

from .cache import LlamaIndexCache

__all__ = ["QueryMatcher", "embedder_name"]

T = TypeVar("T")
Ticket = EntryKey | SemanticQuery


def embedder_name(model: BaseEmbedding) -> str:
    """An embedding model's identity for the index: its class and ``model_name`` (never its settings)."""
    kind = type(model)
    name = getattr(model, "model_name", "")
    dim = getattr(model, "embed_dim", None)
    return f"{kind.__module__}.{kind.__qualname__}:{name if isinstance(name, str) else ''}:{dim or ''}"


class QueryMatcher:
    """The semantic side of `CachedQueryEngine`: lookups and writes by `SemanticQuery` or exact `EntryKey`."""

    def __init__(
        self,
        cache: LlamaIndexCache,
        embed_model: BaseEmbedding,
        similarity_threshold: float,
        guard: LookalikeGuard | None,
        verifier: Verifier | None,
        band: float,
        k: int,
        embed_timeout: float | None,
    ) -> None:
        if not isinstance(embed_model, BaseEmbedding):
            raise TypeError(
                f"embed_model must be a LlamaIndex BaseEmbedding, got {type(embed_model).__name__}"
            )
        self.cache = cache
        self.semantic = SemanticCache(
            cache.core,
            embed_model.get_query_embedding,
            aembed=embed_model.aget_query_embedding,
            threshold=similarity_threshold,
            guard=guard,
            verifier=verifier,
            band=band,
            embedder=embedder_name(embed_model),
            k=k,
            embed_timeout=embed_timeout,
        )

    def query(self, kind: str, question: str, partition: Any, namespace: str | None) -> SemanticQuery:
        return self.semantic.query(kind, question, partition, namespace)

    def lookup(self, ticket: Ticket, decode: Callable[[Any], T | None]) -> tuple[T | None, Seen | None]:
        """A decoded hit, or None and what the lookup saw (for the write, which may come later)."""
        core = self.cache.core
        if isinstance(ticket, EntryKey):
            hit = core.lookup(ticket, decode)
            return (hit.value, None) if hit is not None else (None, core.seen(ticket))
        found = self.semantic.lookup(ticket, decode)
        return (found.value, None) if found is not None else (None, ticket.seen)

    async def alookup(
        self, ticket: Ticket, decode: Callable[[Any], T | None]
    ) -> tuple[T | None, Seen | None]:
        core = self.cache.core
        if isinstance(ticket, EntryKey):
            hit = await core.alookup(ticket, decode)
            return (hit.value, None) if hit is not None else (None, core.seen(ticket))
        found = await self.semantic.alookup(ticket, decode)
        return (found.value, None) if found is not None else (None, ticket.seen)

    def store(self, ticket: Ticket, value: Any, sources: list[Source], seen: Seen | None) -> None:
        if isinstance(ticket, EntryKey):
            self.cache.core.store(ticket, value, sources, seen=seen)
        else:
            self.semantic.store(ticket, value, sources, seen=seen)

    async def astore(self, ticket: Ticket, value: Any, sources: list[Source], seen: Seen | None) -> None:
        if isinstance(ticket, EntryKey):
            await self.cache.core.astore(ticket, value, sources, seen=seen)
        else:
            await self.semantic.astore(ticket, value, sources, seen=seen)
