"""`CachedQueryEngine`: a whole query engine's answers in the Valkey cache.

A hit skips retrieval and the LLM and returns a `Response` with the stored text and source nodes (ids,
``ref_doc_id``s, scores, metadata and text). The entry depends on the documents behind the answer: the
source nodes' ``ref_doc_id``s and whatever was retrieved while the engine ran (a sub-question engine's
source nodes are its sub-answers; its retrievals name the documents). A streaming engine's answer is stored
once its token stream was read to the end, and replayed token by token on a hit.

The key is the query, the engine's shape (see `shape`: retriever filters, document and node ids, query
mode, ``top_k``, postprocessors, synthesizer, prompts, LLM) and `name`. The shape never says which index
an engine searches: give engines over different data different names (or namespaces). An engine whose
shape cannot be read in full (a custom engine or retriever, a router...) must be given a `name`, which
then stands for everything the shape misses, filters and tenant included.

Example:
    >>> engine = CachedQueryEngine(index.as_query_engine(), cache=cache, name="handbook")  # doctest: +SKIP
    >>> engine.query("How many vacation days do I get?")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Generator
from typing import Any

from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.base.response.schema import (
    RESPONSE_TYPE,
    AsyncStreamingResponse,
    Response,
    StreamingResponse,
)
from llama_index.core.instrumentation.span import active_span_id
from llama_index.core.prompts.mixin import PromptMixinType
from llama_index.core.schema import NodeWithScore, QueryBundle

from valkey_rag_cache import EntryKey, Seen, Source
from valkey_rag_cache.digests import fields_digest, json_field
from valkey_rag_cache.keys import validate_namespace
from valkey_rag_cache.semantic import LookalikeGuard, SemanticQuery, Verifier
from valkey_rag_cache.semantic.cache import _DEFAULT_GUARD
from valkey_rag_cache.streams import arecorded, recorded

from . import codec
from .cache import LlamaIndexCache
from .keying import jsonable
from .semantic import QueryMatcher
from .shape import engine_shape
from .tracking import Retrieved, install, ledger, retrieved

__all__ = ["CachedQueryEngine"]

log = logging.getLogger("llamaindex_valkey_cache")

QUERY = "llamaindex.query"
SEMANTIC_QUERY = "llamaindex.query-semantic"
Ticket = EntryKey | SemanticQuery


class CachedQueryEngine(BaseQueryEngine):
    """Answers from the Valkey cache, else from `query_engine`; invalidated with the answer's documents.

    Args:
        query_engine: any LlamaIndex query engine (``index.as_query_engine(...)``, streaming or not).
        cache: the `LlamaIndexCache` holding the answers.
        name: what the engine answers from (its data, tenant, filters), telling apart engines over
            different data that share a namespace; required when its shape cannot be read in full.
        namespace: store this engine's answers in another namespace than the cache's.
        embed_model: a LlamaIndex embedding model: the query string is then also matched by similarity,
            within the exact partition of everything else in the key (shape, name, custom embedding strings,
            image); each candidate passes the look-alike guard and is validated like an exact hit.
        similarity_threshold, guard, verifier, band, k, embed_timeout: see `SemanticCache`.

    Raises:
        ValueError: the engine's shape cannot be read in full and no `name` was given.
    """

    def __init__(
        self,
        query_engine: BaseQueryEngine,
        cache: LlamaIndexCache,
        *,
        name: str = "",
        namespace: str | None = None,
        embed_model: BaseEmbedding | None = None,
        similarity_threshold: float = 0.9,
        guard: LookalikeGuard | None = _DEFAULT_GUARD,
        verifier: Verifier | None = None,
        band: float = 0.05,
        k: int = 4,
        embed_timeout: float | None = 10.0,
    ) -> None:
        if not isinstance(query_engine, BaseQueryEngine):
            raise TypeError(
                f"query_engine must be a LlamaIndex query engine, got {type(query_engine).__name__}"
            )
        unread = engine_shape(query_engine).unread
        if unread and not name:
            raise ValueError(
                f"CachedQueryEngine cannot read everything that selects this engine's answers "
                f"({'; '.join(unread)}): pass name= naming what it answers from (data, tenant, filters)"
            )
        if namespace is not None:
            cache.core.check_namespace(namespace)  # a confined cache refuses another tree here, not per call
        super().__init__(callback_manager=query_engine.callback_manager)
        self.query_engine = query_engine
        self.cache = cache
        self.name = name
        self.namespace = namespace
        self._warned = False
        self._matcher: QueryMatcher | None = None
        if embed_model is not None:
            self._matcher = QueryMatcher(
                cache, embed_model, similarity_threshold, guard, verifier, band, k, embed_timeout
            )
        install()

    def _get_prompt_modules(self) -> PromptMixinType:
        return {"query_engine": self.query_engine}

    # -- keys ------------------------------------------------------------------------------------------

    def _key(self, query: QueryBundle) -> Ticket | None:
        """The entry key; None when the engine changed into one whose shape cannot be read, unnamed."""
        shape = engine_shape(self.query_engine)
        if shape.unread and not self.name:
            if not self._warned:
                self._warned = True
                log.warning(
                    "llamaindex_valkey_cache: not caching the answers of an unnamed engine that cannot be "
                    "read in full (%s): pass CachedQueryEngine(..., name=...)",
                    "; ".join(shape.unread),
                )
            return None
        parts = {
            "name": self.name,
            "shape": shape.parts,
            "query": query.query_str,
            "embedding_strs": query.custom_embedding_strs,
            "image": query.image_path,
        }
        if self._matcher is not None and query.query_str.strip():
            partition = jsonable({k: v for k, v in parts.items() if k != "query"})
            return self._matcher.query(SEMANTIC_QUERY, query.query_str, partition, self.namespace)
        # Length-prefixed fields (`digests`): what selects the answers (the same from query to query, so its
        # hash state is kept), then the query, each as sorted-key JSON.
        core = self.cache.core
        namespace = core.check_namespace(validate_namespace(self.namespace or core.namespace))
        engine = json_field(jsonable({"name": parts.pop("name"), "shape": parts.pop("shape")}))
        return EntryKey(namespace, fields_digest(QUERY, engine, json_field(jsonable(parts))))

    def _lookup(self, key: Ticket) -> tuple[codec.Answer | None, Seen | None]:
        if self._matcher is not None:
            return self._matcher.lookup(key, codec.decode_answer)
        assert isinstance(key, EntryKey)
        hit = self.cache.core.lookup(key, codec.decode_answer)
        # What the lookup saw, for the write, which a stream makes later, maybe elsewhere.
        return (hit.value, None) if hit is not None else (None, self.cache.core.seen(key))

    async def _alookup(self, key: Ticket) -> tuple[codec.Answer | None, Seen | None]:
        if self._matcher is not None:
            return await self._matcher.alookup(key, codec.decode_answer)
        assert isinstance(key, EntryKey)
        hit = await self.cache.core.alookup(key, codec.decode_answer)
        return (hit.value, None) if hit is not None else (None, self.cache.core.seen(key))

    @property
    def _streaming(self) -> bool:
        return bool(getattr(getattr(self.query_engine, "_response_synthesizer", None), "_streaming", False))

    def _sources(self, response: Any, during: tuple[Retrieved, ...]) -> list[Source]:
        items = {item.id: item for item in (*retrieved(getattr(response, "source_nodes", None)), *during)}
        return self.cache.sources_of(items.values())

    # -- query -----------------------------------------------------------------------------------------

    def _query(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        key = self._key(query_bundle)
        if key is None:
            return self.query_engine.query(query_bundle)
        answer, seen = self._lookup(key)
        if answer is not None:
            return self._replay(answer, asynchronous=False)
        span = active_span_id.get()
        start = len(ledger().under(span))
        response = self.query_engine.query(query_bundle)
        during = ledger().under(span, start)
        if isinstance(response, StreamingResponse):
            response.response_gen = recorded(
                response.response_gen, lambda tokens: self._store(key, response, during, seen, tokens)
            )
        elif isinstance(response, Response):
            self._store(key, response, during, seen, None)
        return response

    async def _aquery(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        key = self._key(query_bundle)
        if key is None:
            return await self.query_engine.aquery(query_bundle)
        answer, seen = await self._alookup(key)
        if answer is not None:
            return self._replay(answer, asynchronous=True)
        span = active_span_id.get()
        start = len(ledger().under(span))
        response = await self.query_engine.aquery(query_bundle)
        during = ledger().under(span, start)
        if isinstance(response, AsyncStreamingResponse):
            response.response_gen = arecorded(
                response.response_gen, lambda tokens: self._astore(key, response, during, seen, tokens)
            )
        elif isinstance(response, StreamingResponse):
            response.response_gen = recorded(
                response.response_gen, lambda tokens: self._store(key, response, during, seen, tokens)
            )
        elif isinstance(response, Response):
            await self._astore(key, response, during, seen, None)
        return response

    def _store(
        self,
        key: Ticket,
        response: Any,
        during: tuple[Retrieved, ...],
        seen: Seen | None,
        tokens: list[str] | None,
    ) -> None:
        value = self._encode(response, tokens)
        if value is None:  # source nodes JSON cannot hold: the answer is returned, not cached
            return
        sources = self._sources(response, during)
        if self._matcher is not None:
            self._matcher.store(key, value, sources, seen)
        else:
            assert isinstance(key, EntryKey)
            self.cache.core.store(key, value, sources, seen=seen)

    async def _astore(
        self,
        key: Ticket,
        response: Any,
        during: tuple[Retrieved, ...],
        seen: Seen | None,
        tokens: list[str] | None,
    ) -> None:
        value = self._encode(response, tokens)
        if value is None:
            return
        sources = self._sources(response, during)
        if self._matcher is not None:
            await self._matcher.astore(key, value, sources, seen)
        else:
            assert isinstance(key, EntryKey)
            await self.cache.core.astore(key, value, sources, seen=seen)

    @staticmethod
    def _encode(response: Any, tokens: list[str] | None) -> dict[str, Any] | None:
        text = "".join(tokens) if tokens is not None else (response.response or "")
        return codec.encode_answer(text, response.source_nodes, response.metadata, tokens)

    def _replay(self, answer: codec.Answer, asynchronous: bool) -> RESPONSE_TYPE:
        if not self._streaming:
            return answer.response()
        tokens = answer.tokens if answer.tokens is not None else (answer.text,)
        nodes: list[NodeWithScore] = list(answer.source_nodes)
        if asynchronous:
            return AsyncStreamingResponse(_atokens(tokens), source_nodes=nodes, metadata=answer.metadata)
        return StreamingResponse(_tokens(tokens), source_nodes=nodes, metadata=answer.metadata)

    # -- the rest is the inner engine's ----------------------------------------------------------------

    def retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return self.query_engine.retrieve(query_bundle)

    def synthesize(self, *args: Any, **kwargs: Any) -> RESPONSE_TYPE:
        return self.query_engine.synthesize(*args, **kwargs)

    async def asynthesize(self, *args: Any, **kwargs: Any) -> RESPONSE_TYPE:
        return await self.query_engine.asynthesize(*args, **kwargs)


def _tokens(tokens: tuple[str, ...]) -> Generator[str, None, None]:
    yield from tokens


async def _atokens(tokens: tuple[str, ...]) -> AsyncGenerator[str, None]:
    for token in tokens:
        yield token
