"""`InvalidatingVectorStore`: a vector store wrapper that invalidates cached answers as documents change.

Under ``langchain_core.indexing.index(...)`` a changed document is written under a new hashed id and its
old version is removed by cleanup through ``delete(ids)``; ``index`` reports only counts. The hooks therefore
sit on the store: every document added, and every document deleted, invalidates the answers built on it,
both by its id and by ``metadata[source_id_key]``, so the cache may record either.

Example:
    >>> store = InvalidatingVectorStore(InMemoryVectorStore(embeddings), cache)  # doctest: +SKIP
    >>> index(docs, record_manager, store, cleanup="incremental", source_id_key="source")  # doctest: +SKIP
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore

from valkey_rag_cache.operations import Invalidates

__all__ = ["InvalidatingVectorStore"]


class InvalidatingVectorStore(VectorStore):
    """Delegates to `vector_store`; adding or deleting a document invalidates the answers that depend on it.

    The write happens first and the invalidation second: an answer computed in between is refused by the
    cache's race check, and once the call returns no lookup serves an answer built on the old text. If the
    invalidation fails (Valkey down) the call raises `InvalidationError`, so ``index(...)`` does not record
    the batch and the next run retries it.

    Args:
        vector_store: the store to wrap.
        cache: what to invalidate: a `ValkeyCache` of either framework or an `AnswerCache` (`Invalidates`).
        source_id_key: the metadata key naming a document's source (``index``'s ``source_id_key``); ``None``
            to invalidate by document id only.
    """

    def __init__(
        self,
        vector_store: VectorStore,
        cache: Invalidates,
        source_id_key: str | None = "source",
    ) -> None:
        self.vector_store = vector_store
        self.cache = cache
        self.source_id_key = source_id_key
        # id -> source of what was added through this wrapper: delete(ids) then knows sources without a read.
        self._source_of: dict[str, str] = {}
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        # Anything store-specific (filters, clients, ...) is the wrapped store's.
        if name == "vector_store":
            raise AttributeError(name)
        return getattr(self.vector_store, name)

    # -- what to invalidate ----------------------------------------------------------------------------

    def _source(self, doc: Document) -> str | None:
        if self.source_id_key is None:
            return None
        value = (doc.metadata or {}).get(self.source_id_key)
        return str(value) if value not in (None, "") else None

    def _invalidate(self, targets: list[str]) -> None:
        if targets:
            self.cache.invalidate_sources(targets)

    async def _ainvalidate(self, targets: list[str]) -> None:
        if targets:
            await self.cache.ainvalidate_sources(targets)

    def _added(self, ids: Sequence[str], documents: Sequence[Document]) -> list[str]:
        targets = [i for i in ids if i]
        with self._lock:
            for doc_id, doc in zip(ids, documents, strict=False):
                source = self._source(doc)
                if source is not None:
                    targets.append(source)
                    if doc_id:
                        self._source_of[doc_id] = source
        return _unique(targets)

    def _known_sources(self, ids: Sequence[str]) -> tuple[list[str], list[str]]:
        """(sources remembered for `ids`, ids whose source must be read from the store)."""
        if self.source_id_key is None:
            return [], []
        with self._lock:
            known = [self._source_of[i] for i in ids if i in self._source_of]
            unknown = [i for i in ids if i not in self._source_of]
        return known, unknown

    def _forget(self, ids: Sequence[str]) -> None:
        with self._lock:
            for i in ids:
                self._source_of.pop(i, None)

    def _read_sources(self, ids: Sequence[str]) -> list[str]:
        if not ids:
            return []
        try:
            docs = self.vector_store.get_by_ids(ids)
        except NotImplementedError:  # the store cannot read by id: the ids alone are invalidated
            return []
        return [s for s in (self._source(d) for d in docs) if s is not None]

    async def _aread_sources(self, ids: Sequence[str]) -> list[str]:
        if not ids:
            return []
        try:
            docs = await self.vector_store.aget_by_ids(ids)
        except NotImplementedError:
            return []
        return [s for s in (self._source(d) for d in docs) if s is not None]

    # -- writes ----------------------------------------------------------------------------------------

    def add_documents(self, documents: list[Document], **kwargs: Any) -> list[str]:
        ids = self.vector_store.add_documents(documents, **kwargs)
        self._invalidate(self._added(ids, documents))
        return ids

    async def aadd_documents(self, documents: list[Document], **kwargs: Any) -> list[str]:
        ids = await self.vector_store.aadd_documents(documents, **kwargs)
        await self._ainvalidate(self._added(ids, documents))
        return ids

    def add_texts(
        self, texts: Iterable[str], metadatas: list[dict[Any, Any]] | None = None, **kwargs: Any
    ) -> list[str]:
        texts = list(texts)
        ids = self.vector_store.add_texts(texts, metadatas, **kwargs)
        docs = [
            Document(page_content=t, metadata=(metadatas or [{}] * len(texts))[i])
            for i, t in enumerate(texts)
        ]
        self._invalidate(self._added(ids, docs))
        return ids

    async def aadd_texts(
        self, texts: Iterable[str], metadatas: list[dict[Any, Any]] | None = None, **kwargs: Any
    ) -> list[str]:
        texts = list(texts)
        ids = await self.vector_store.aadd_texts(texts, metadatas, **kwargs)
        docs = [
            Document(page_content=t, metadata=(metadatas or [{}] * len(texts))[i])
            for i, t in enumerate(texts)
        ]
        await self._ainvalidate(self._added(ids, docs))
        return ids

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete from the wrapped store, then invalidate the deleted ids and their sources.

        ``delete()`` without ids empties many stores: then every cached answer is invalidated.
        """
        if ids is None:
            result = self.vector_store.delete(None, **kwargs)
            with self._lock:
                self._source_of.clear()
            self.cache.invalidate_all()
            return result
        known, unknown = self._known_sources(ids)
        sources = known + self._read_sources(unknown)  # read before the documents are gone
        result = self.vector_store.delete(ids, **kwargs)
        self._invalidate(_unique([*ids, *sources]))
        self._forget(ids)
        return result

    async def adelete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        if ids is None:
            result = await self.vector_store.adelete(None, **kwargs)
            with self._lock:
                self._source_of.clear()
            await self.cache.ainvalidate_all()
            return result
        known, unknown = self._known_sources(ids)
        sources = known + await self._aread_sources(unknown)
        result = await self.vector_store.adelete(ids, **kwargs)
        await self._ainvalidate(_unique([*ids, *sources]))
        self._forget(ids)
        return result

    # -- reads: the wrapped store's --------------------------------------------------------------------

    @property
    def embeddings(self) -> Embeddings | None:
        return self.vector_store.embeddings

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        return self.vector_store.get_by_ids(ids)

    async def aget_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        return await self.vector_store.aget_by_ids(ids)

    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        return self.vector_store.similarity_search(query, k=k, **kwargs)

    async def asimilarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        return await self.vector_store.asimilarity_search(query, k=k, **kwargs)

    def similarity_search_with_score(self, *args: Any, **kwargs: Any) -> list[tuple[Document, float]]:
        return self.vector_store.similarity_search_with_score(*args, **kwargs)

    async def asimilarity_search_with_score(self, *args: Any, **kwargs: Any) -> list[tuple[Document, float]]:
        return await self.vector_store.asimilarity_search_with_score(*args, **kwargs)

    def similarity_search_by_vector(
        self, embedding: list[float], k: int = 4, **kwargs: Any
    ) -> list[Document]:
        return self.vector_store.similarity_search_by_vector(embedding, k=k, **kwargs)

    async def asimilarity_search_by_vector(
        self, embedding: list[float], k: int = 4, **kwargs: Any
    ) -> list[Document]:
        return await self.vector_store.asimilarity_search_by_vector(embedding, k=k, **kwargs)

    def max_marginal_relevance_search(self, query: str, *args: Any, **kwargs: Any) -> list[Document]:
        return self.vector_store.max_marginal_relevance_search(query, *args, **kwargs)

    async def amax_marginal_relevance_search(self, query: str, *args: Any, **kwargs: Any) -> list[Document]:
        return await self.vector_store.amax_marginal_relevance_search(query, *args, **kwargs)

    def max_marginal_relevance_search_by_vector(
        self, embedding: list[float], *args: Any, **kwargs: Any
    ) -> list[Document]:
        return self.vector_store.max_marginal_relevance_search_by_vector(embedding, *args, **kwargs)

    async def amax_marginal_relevance_search_by_vector(
        self, embedding: list[float], *args: Any, **kwargs: Any
    ) -> list[Document]:
        return await self.vector_store.amax_marginal_relevance_search_by_vector(embedding, *args, **kwargs)

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        return self.vector_store._select_relevance_score_fn()

    def _get_retriever_tags(self) -> list[str]:
        return self.vector_store._get_retriever_tags()

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict[Any, Any]] | None = None,
        **kwargs: Any,
    ) -> InvalidatingVectorStore:
        raise NotImplementedError(
            "wrap an existing store instead: InvalidatingVectorStore(SomeStore.from_texts(...), cache)"
        )


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
