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
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from typing import Any

from llama_index.core.base.base_query_engine import BaseQueryEngine
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

from . import codec
from .cache import ValkeyCache
from .keying import jsonable
from .shape import engine_shape
from .tracking import Retrieved, install, ledger, retrieved

__all__ = ["CachedQueryEngine"]

log = logging.getLogger("llamaindex_valkey_cache")

QUERY = "llamaindex.query"


class CachedQueryEngine(BaseQueryEngine):
    """Answers from the Valkey cache, else from `query_engine`; invalidated with the answer's documents.

    Args:
        query_engine: any LlamaIndex query engine (``index.as_query_engine(...)``, streaming or not).
        cache: the `ValkeyCache` holding the answers.
        name: what the engine answers from (its data, tenant, filters), telling apart engines over
            different data that share a namespace; required when its shape cannot be read in full.
        namespace: store this engine's answers in another namespace than the cache's.

    Raises:
        ValueError: the engine's shape cannot be read in full and no `name` was given.
    """

    def __init__(
        self,
        query_engine: BaseQueryEngine,
        cache: ValkeyCache,
        *,
        name: str = "",
        namespace: str | None = None,
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
        install()

    def _get_prompt_modules(self) -> PromptMixinType:
        return {"query_engine": self.query_engine}

    # -- keys ------------------------------------------------------------------------------------------

    def _key(self, query: QueryBundle) -> EntryKey | None:
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
        return self.cache.core.key(QUERY, jsonable(parts), namespace=self.namespace)

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
        answer, seen = self.cache.lookup(key, codec.decode_answer)
        if answer is not None:
            return self._replay(answer, asynchronous=False)
        span = active_span_id.get()
        start = len(ledger().under(span))
        response = self.query_engine.query(query_bundle)
        during = ledger().under(span, start)
        if isinstance(response, StreamingResponse):
            response.response_gen = self._recorded(response, response.response_gen, key, during, seen)
        elif isinstance(response, Response):
            self._store(key, response, during, seen, None)
        return response

    async def _aquery(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        key = self._key(query_bundle)
        if key is None:
            return await self.query_engine.aquery(query_bundle)
        answer, seen = await self.cache.alookup(key, codec.decode_answer)
        if answer is not None:
            return self._replay(answer, asynchronous=True)
        span = active_span_id.get()
        start = len(ledger().under(span))
        response = await self.query_engine.aquery(query_bundle)
        during = ledger().under(span, start)
        if isinstance(response, AsyncStreamingResponse):
            response.response_gen = self._arecorded(response, response.response_gen, key, during, seen)
        elif isinstance(response, StreamingResponse):
            response.response_gen = self._recorded(response, response.response_gen, key, during, seen)
        elif isinstance(response, Response):
            await self._astore(key, response, during, seen, None)
        return response

    def _store(
        self,
        key: EntryKey,
        response: Any,
        during: tuple[Retrieved, ...],
        seen: Seen | None,
        tokens: list[str] | None,
    ) -> None:
        self.cache.store(key, self._encode(response, tokens), self._sources(response, during), seen)

    async def _astore(
        self,
        key: EntryKey,
        response: Any,
        during: tuple[Retrieved, ...],
        seen: Seen | None,
        tokens: list[str] | None,
    ) -> None:
        await self.cache.astore(key, self._encode(response, tokens), self._sources(response, during), seen)

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

    # -- streams: stored once read to the end ----------------------------------------------------------

    def _recorded(
        self,
        response: StreamingResponse | AsyncStreamingResponse,
        tokens: Iterator[str],
        key: EntryKey,
        during: tuple[Retrieved, ...],
        seen: Seen | None,
    ) -> Generator[str, None, None]:
        seen_tokens: list[str] = []
        for token in tokens:
            seen_tokens.append(token)
            yield token
        self._store(key, response, during, seen, seen_tokens)

    async def _arecorded(
        self,
        response: AsyncStreamingResponse,
        tokens: AsyncIterator[str],
        key: EntryKey,
        during: tuple[Retrieved, ...],
        seen: Seen | None,
    ) -> AsyncGenerator[str, None]:
        seen_tokens: list[str] = []
        async for token in tokens:
            seen_tokens.append(token)
            yield token
        await self._astore(key, response, during, seen, seen_tokens)

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
