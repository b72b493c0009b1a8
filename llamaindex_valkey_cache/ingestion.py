"""Ingestion hooks: stores that invalidate the cached answers of every document they change or delete.

Wrap the stores once; ``IngestionPipeline`` (``DocstoreStrategy.UPSERTS`` / ``UPSERTS_AND_DELETE``, ``run``
and ``arun``) and ``VectorStoreIndex`` (``insert``, ``refresh_ref_docs``, ``update_ref_doc``,
``delete_ref_doc``, sync and async) then need no extra code.

- `InvalidatingPydanticVectorStore` (any LlamaIndex vector store, a ``BasePydanticVectorStore``): every
  ``delete`` / ``add`` of a document's nodes invalidates that document (``node.ref_doc_id``), after the store
  changed, so no answer computed from the old content survives. It sees every path that changes what
  retrieval returns, including ``index.delete_ref_doc(id)``, which never touches the docstore.
- `InvalidatingDocstore`: a document whose stored hash changes, or that is deleted, is invalidated. Use it
  for indexes that read nodes from the docstore (``SummaryIndex``...), or next to the vector store wrapper.
  A pipeline deletes a document from the docstore *before* it deletes it from the vector store, so a
  deleted document is invalidated twice: at once, and again at the docstore's next write (the next
  deletion, or the hashes written at the end of the run, after the vector store changed). An answer
  computed from the old content in between does not outlive the run.

Adding a brand-new document invalidates nothing that does not already depend on its id: answers that would
now retrieve it expire with their TTL, or call ``cache.invalidate_namespace()`` after a large import.

Example:
    >>> storage = StorageContext.from_defaults(  # doctest: +SKIP
    ...     vector_store=InvalidatingPydanticVectorStore(SimpleVectorStore(), cache),
    ...     docstore=InvalidatingDocstore(SimpleDocumentStore(), cache),
    ... )
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from llama_index.core.schema import BaseNode
from llama_index.core.storage.docstore.types import DEFAULT_BATCH_SIZE, BaseDocumentStore, RefDocInfo
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryResult,
)
from pydantic import PrivateAttr

from valkey_rag_cache.operations import Invalidates

__all__ = ["InvalidatingDocstore", "InvalidatingPydanticVectorStore"]

logger = logging.getLogger(__name__)


def _document_of(node: BaseNode) -> str:
    return node.ref_doc_id or node.node_id


def _unique(ids: Iterable[str]) -> list[str]:
    return [i for i in dict.fromkeys(ids) if i]


def _invalidate(cache: Invalidates, ids: Iterable[str]) -> None:
    unique = _unique(ids)
    if unique:
        cache.invalidate_sources(unique)  # the core batches large lists itself


async def _ainvalidate(cache: Invalidates, ids: Iterable[str]) -> None:
    unique = _unique(ids)
    if unique:
        await cache.ainvalidate_sources(unique)


class InvalidatingPydanticVectorStore(BasePydanticVectorStore):
    """A vector store that invalidates a document's cached answers whenever its nodes are added or deleted.

    Args:
        vector_store: the store to wrap; everything else is passed through to it.
        cache: the `LlamaIndexCache` whose answers depend on the store's documents (any `Invalidates`).

    Example:
        >>> vector_store = InvalidatingPydanticVectorStore(ChromaVectorStore(...), cache)  # doctest: +SKIP
        >>> index = VectorStoreIndex.from_vector_store(vector_store)  # doctest: +SKIP
    """

    stores_text: bool = False
    _store: BasePydanticVectorStore = PrivateAttr()
    _cache: Invalidates = PrivateAttr()

    def __init__(self, vector_store: BasePydanticVectorStore, cache: Invalidates) -> None:
        super().__init__(
            stores_text=vector_store.stores_text, is_embedding_query=vector_store.is_embedding_query
        )
        self._store = vector_store
        self._cache = cache

    @classmethod
    def class_name(cls) -> str:
        return "InvalidatingPydanticVectorStore"

    def __getattr__(self, name: str) -> Any:
        # Store-specific attributes (SimpleVectorStore.data, flat_metadata...) come from the wrapped store.
        try:
            return super().__getattr__(name)  # type: ignore[misc]
        except AttributeError:
            private = object.__getattribute__(self, "__pydantic_private__") or {}
            if name.startswith("__") or "_store" not in private:
                raise
            return getattr(private["_store"], name)

    @property
    def vector_store(self) -> BasePydanticVectorStore:
        return self._store

    @property
    def client(self) -> Any:
        return self._store.client

    # -- writes: the store first, then the cache, so no answer built on the old content survives -------

    def add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        ids = self._store.add(nodes, **kwargs)
        _invalidate(self._cache, (_document_of(n) for n in nodes))
        return ids

    async def async_add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        ids = await self._store.async_add(nodes, **kwargs)
        await _ainvalidate(self._cache, (_document_of(n) for n in nodes))
        return ids

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        self._store.delete(ref_doc_id, **delete_kwargs)
        _invalidate(self._cache, [ref_doc_id])

    async def adelete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        await self._store.adelete(ref_doc_id, **delete_kwargs)
        await _ainvalidate(self._cache, [ref_doc_id])

    def delete_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None, **delete_kwargs: Any
    ) -> None:
        documents = self._documents_of(node_ids, filters)
        self._store.delete_nodes(node_ids, filters, **delete_kwargs)
        if documents is None:
            self._cache.invalidate_all()
        else:
            _invalidate(self._cache, documents)

    async def adelete_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None, **delete_kwargs: Any
    ) -> None:
        documents = self._documents_of(node_ids, filters)
        await self._store.adelete_nodes(node_ids, filters, **delete_kwargs)
        if documents is None:
            await self._cache.ainvalidate_all()
        else:
            await _ainvalidate(self._cache, documents)

    def clear(self) -> None:
        """Empty the store; every answer built on it goes too (the store cannot list what it held)."""
        self._store.clear()
        self._cache.invalidate_all()

    async def aclear(self) -> None:
        await self._store.aclear()
        await self._cache.ainvalidate_all()

    def _documents_of(self, node_ids: list[str] | None, filters: MetadataFilters | None) -> list[str] | None:
        """The documents whose nodes a deletion removes; None when the store cannot tell."""
        try:
            return [_document_of(n) for n in self._store.get_nodes(node_ids, filters)] + list(node_ids or [])
        except NotImplementedError:
            pass
        data = getattr(self._store, "data", None)
        by_node = getattr(data, "text_id_to_ref_doc_id", None)
        if node_ids is not None and filters is None and isinstance(by_node, dict):
            # SimpleVectorStore keeps no nodes, only this map (with "None" for nodes without a document).
            return [d for d in (by_node.get(i) for i in node_ids) if d and d != "None"] + list(node_ids)
        logger.warning("%s cannot list the nodes it deletes: invalidating every cached answer", self._store)
        return None

    # -- reads and the rest pass through ---------------------------------------------------------------

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        return self._store.query(query, **kwargs)

    async def aquery(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        return await self._store.aquery(query, **kwargs)

    def get_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None
    ) -> list[BaseNode]:
        return self._store.get_nodes(node_ids, filters)

    async def aget_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None
    ) -> list[BaseNode]:
        return await self._store.aget_nodes(node_ids, filters)

    def persist(self, persist_path: str, fs: Any = None) -> None:
        self._store.persist(persist_path, fs=fs)


class InvalidatingDocstore(BaseDocumentStore):
    """A docstore that invalidates a document's cached answers when its hash changes or it is deleted.

    A deleted document is invalidated when it is deleted and again at the next write to this docstore:
    callers that delete from the docstore first and from the vector store next (``IngestionPipeline``)
    always write again afterwards, so nothing retrieved in between outlives their run.

    Args:
        docstore: the docstore to wrap (``SimpleDocumentStore``, a Redis or Postgres docstore...).
        cache: the `LlamaIndexCache` whose answers depend on the docstore's documents (any `Invalidates`).

    Example:
        >>> pipeline = IngestionPipeline(  # doctest: +SKIP
        ...     transformations=[SentenceSplitter(), embed_model],
        ...     docstore=InvalidatingDocstore(SimpleDocumentStore(), cache),
        ...     vector_store=InvalidatingPydanticVectorStore(vector_store, cache),
        ...     docstore_strategy=DocstoreStrategy.UPSERTS_AND_DELETE,
        ... )
    """

    def __init__(self, docstore: BaseDocumentStore, cache: Invalidates) -> None:
        self.docstore = docstore
        self.cache = cache
        self._lock = threading.Lock()
        self._deleted: list[str] = []  # invalidated once, invalidated again at the next write

    def __repr__(self) -> str:
        return f"InvalidatingDocstore({self.docstore!r}, {self.cache!r})"

    def __getattr__(self, name: str) -> Any:
        # Store-specific methods (to_dict, ref_doc_exists...) come from the wrapped docstore.
        if name.startswith("__") or name in ("docstore", "cache", "_lock", "_deleted"):
            raise AttributeError(name)
        return getattr(self.docstore, name)

    # -- invalidation: this call's documents plus the deletions of earlier calls ------------------------

    def _take_deleted(self) -> list[str]:
        with self._lock:
            deleted, self._deleted = self._deleted, []
        return deleted

    def _keep_deleted(self, ids: Iterable[str]) -> None:
        with self._lock:
            self._deleted.extend(ids)

    def _invalidate(self, ids: Iterable[str], *, deleted: bool = False) -> None:
        """Invalidate `ids` and the earlier deletions; `deleted` ids are invalidated again next time."""
        current = _unique(ids)
        earlier = self._take_deleted()
        try:
            _invalidate(self.cache, [*earlier, *current])
        except BaseException:
            self._keep_deleted([*earlier, *(current if deleted else [])])  # still owed; the caller sees why
            raise
        if deleted:
            self._keep_deleted(current)

    async def _ainvalidate(self, ids: Iterable[str], *, deleted: bool = False) -> None:
        current = _unique(ids)
        earlier = self._take_deleted()
        try:
            await _ainvalidate(self.cache, [*earlier, *current])
        except BaseException:
            self._keep_deleted([*earlier, *(current if deleted else [])])
            raise
        if deleted:
            self._keep_deleted(current)

    # -- what changed ----------------------------------------------------------------------------------

    def _changed_hashes(self, hashes: dict[str, str]) -> list[str]:
        return [i for i, h in hashes.items() if (old := self.docstore.get_document_hash(i)) and old != h]

    async def _achanged_hashes(self, hashes: dict[str, str]) -> list[str]:
        return [
            i for i, h in hashes.items() if (old := await self.docstore.aget_document_hash(i)) and old != h
        ]

    def _deleted_ids(self, doc_id: str) -> list[str]:
        node = self.docstore.get_document(doc_id, raise_error=False)
        return [doc_id, *([node.ref_doc_id] if node is not None and node.ref_doc_id else [])]

    async def _adeleted_ids(self, doc_id: str) -> list[str]:
        node = await self.docstore.aget_document(doc_id, raise_error=False)
        return [doc_id, *([node.ref_doc_id] if node is not None and node.ref_doc_id else [])]

    # -- writes ----------------------------------------------------------------------------------------

    def set_document_hash(self, doc_id: str, doc_hash: str) -> None:
        self.set_document_hashes({doc_id: doc_hash})

    async def aset_document_hash(self, doc_id: str, doc_hash: str) -> None:
        await self.aset_document_hashes({doc_id: doc_hash})

    def set_document_hashes(self, doc_hashes: dict[str, str]) -> None:
        # Invalidate before recording the new hash: if Valkey is unreachable the run fails, and a rerun
        # still sees the document as changed.
        self._invalidate(self._changed_hashes(doc_hashes))
        self.docstore.set_document_hashes(doc_hashes)

    async def aset_document_hashes(self, doc_hashes: dict[str, str]) -> None:
        await self._ainvalidate(await self._achanged_hashes(doc_hashes))
        await self.docstore.aset_document_hashes(doc_hashes)

    def add_documents(
        self,
        docs: Sequence[BaseNode],
        allow_update: bool = True,
        batch_size: int = DEFAULT_BATCH_SIZE,
        store_text: bool = True,
    ) -> None:
        changed = self._changed_hashes({d.node_id: d.hash for d in docs})
        by_id = {d.node_id: d for d in docs}
        self._invalidate(_document_of(by_id[i]) for i in changed)
        self.docstore.add_documents(
            docs, allow_update=allow_update, batch_size=batch_size, store_text=store_text
        )

    async def async_add_documents(
        self,
        docs: Sequence[BaseNode],
        allow_update: bool = True,
        batch_size: int = DEFAULT_BATCH_SIZE,
        store_text: bool = True,
    ) -> None:
        changed = await self._achanged_hashes({d.node_id: d.hash for d in docs})
        by_id = {d.node_id: d for d in docs}
        await self._ainvalidate(_document_of(by_id[i]) for i in changed)
        await self.docstore.async_add_documents(
            docs, allow_update=allow_update, batch_size=batch_size, store_text=store_text
        )

    def delete_document(self, doc_id: str, raise_error: bool = True) -> None:
        ids = self._deleted_ids(doc_id)
        self.docstore.delete_document(doc_id, raise_error=raise_error)
        self._invalidate(ids, deleted=True)

    async def adelete_document(self, doc_id: str, raise_error: bool = True) -> None:
        ids = await self._adeleted_ids(doc_id)
        await self.docstore.adelete_document(doc_id, raise_error=raise_error)
        await self._ainvalidate(ids, deleted=True)

    def delete_ref_doc(self, ref_doc_id: str, raise_error: bool = True) -> None:
        self.docstore.delete_ref_doc(ref_doc_id, raise_error=raise_error)
        self._invalidate([ref_doc_id], deleted=True)

    async def adelete_ref_doc(self, ref_doc_id: str, raise_error: bool = True) -> None:
        await self.docstore.adelete_ref_doc(ref_doc_id, raise_error=raise_error)
        await self._ainvalidate([ref_doc_id], deleted=True)

    # -- reads pass through ----------------------------------------------------------------------------

    @property
    def docs(self) -> dict[str, BaseNode]:
        return self.docstore.docs

    def persist(self, persist_path: str | None = None, fs: Any = None) -> None:
        if persist_path is None:
            self.docstore.persist(fs=fs)
        else:
            self.docstore.persist(persist_path, fs=fs)

    def get_document(self, doc_id: str, raise_error: bool = True) -> BaseNode | None:
        return self.docstore.get_document(doc_id, raise_error=raise_error)

    async def aget_document(self, doc_id: str, raise_error: bool = True) -> BaseNode | None:
        return await self.docstore.aget_document(doc_id, raise_error=raise_error)

    def document_exists(self, doc_id: str) -> bool:
        return self.docstore.document_exists(doc_id)

    async def adocument_exists(self, doc_id: str) -> bool:
        return await self.docstore.adocument_exists(doc_id)

    def get_document_hash(self, doc_id: str) -> str | None:
        return self.docstore.get_document_hash(doc_id)

    async def aget_document_hash(self, doc_id: str) -> str | None:
        return await self.docstore.aget_document_hash(doc_id)

    def get_all_document_hashes(self) -> dict[str, str]:
        return self.docstore.get_all_document_hashes()

    async def aget_all_document_hashes(self) -> dict[str, str]:
        return await self.docstore.aget_all_document_hashes()

    def get_all_ref_doc_info(self) -> dict[str, RefDocInfo] | None:
        return self.docstore.get_all_ref_doc_info()

    async def aget_all_ref_doc_info(self) -> dict[str, RefDocInfo] | None:
        return await self.docstore.aget_all_ref_doc_info()

    def get_ref_doc_info(self, ref_doc_id: str) -> RefDocInfo | None:
        return self.docstore.get_ref_doc_info(ref_doc_id)

    async def aget_ref_doc_info(self, ref_doc_id: str) -> RefDocInfo | None:
        return await self.docstore.aget_ref_doc_info(ref_doc_id)

    def get_nodes(self, node_ids: list[str], raise_error: bool = True) -> list[BaseNode]:
        return self.docstore.get_nodes(node_ids, raise_error=raise_error)

    async def aget_nodes(self, node_ids: list[str], raise_error: bool = True) -> list[BaseNode]:
        return await self.docstore.aget_nodes(node_ids, raise_error=raise_error)
