"""`CachedQueryEngine`: a whole query engine's answers in the Valkey cache.

A hit skips retrieval and the LLM and returns a `Response` with the stored text and source nodes (ids,
``ref_doc_id``s, scores, metadata and text). The entry depends on the documents behind the answer: the
source nodes' ``ref_doc_id``s and whatever was retrieved while the engine ran (a sub-question engine's
source nodes are its sub-answers; its retrievals name the documents). A streaming engine's answer is stored
once its token stream was read to the end, and replayed token by token on a hit.

The key is the query and the engine's shape (class, prompts, LLM, retriever settings) plus `name`: give
engines over different data different names (or namespaces), since the query alone cannot tell them apart.

Example:
    >>> engine = CachedQueryEngine(index.as_query_engine(), cache=cache, name="handbook")  # doctest: +SKIP
    >>> engine.query("How many vacation days do I get?")  # doctest: +SKIP
"""

from __future__ import annotations

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
from .keying import jsonable, llm_identity
from .tracking import Retrieved, install, ledger, retrieved

__all__ = ["CachedQueryEngine"]

QUERY = "llamaindex.query"


class CachedQueryEngine(BaseQueryEngine):
    """Answers from the Valkey cache, else from `query_engine`; invalidated with the answer's documents.

    Args:
        query_engine: any LlamaIndex query engine (``index.as_query_engine(...)``, streaming or not).
        cache: the `ValkeyCache` holding the answers.
        name: tells apart engines over different data that share a namespace.
        namespace: store this engine's answers in another namespace than the cache's.
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
        super().__init__(callback_manager=query_engine.callback_manager)
        self.query_engine = query_engine
        self.cache = cache
        self.name = name
        self.namespace = namespace
        install()

    def _get_prompt_modules(self) -> PromptMixinType:
        return {"query_engine": self.query_engine}

    # -- keys ------------------------------------------------------------------------------------------

    def _shape(self) -> dict[str, Any]:
        """What about the engine changes its answers, as far as it can be read off the engine."""
        engine = self.query_engine
        synthesizer = getattr(engine, "_response_synthesizer", None)
        retriever = getattr(engine, "_retriever", None)
        llm = getattr(synthesizer, "_llm", None)
        prompts = {name: prompt.get_template() for name, prompt in sorted(engine.get_prompts().items())}
        return {
            "engine": f"{type(engine).__module__}.{type(engine).__qualname__}",
            "synthesizer": type(synthesizer).__qualname__ if synthesizer is not None else None,
            "retriever": type(retriever).__qualname__ if retriever is not None else None,
            "top_k": getattr(retriever, "similarity_top_k", getattr(retriever, "_similarity_top_k", None)),
            "llm": llm_identity(llm) if llm is not None and hasattr(llm, "metadata") else None,
            "prompts": prompts,
        }

    def _key(self, query: QueryBundle) -> EntryKey:
        parts = {
            "name": self.name,
            "shape": self._shape(),
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
        self.cache.store(key, lambda: self._encode(response, tokens), self._sources(response, during), seen)

    async def _astore(
        self,
        key: EntryKey,
        response: Any,
        during: tuple[Retrieved, ...],
        seen: Seen | None,
        tokens: list[str] | None,
    ) -> None:
        await self.cache.astore(
            key, lambda: self._encode(response, tokens), self._sources(response, during), seen
        )

    @staticmethod
    def _encode(response: Any, tokens: list[str] | None) -> dict[str, Any]:
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
