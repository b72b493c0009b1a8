"""`CachedRunnable`: an answer cache around a whole chain (question in, answer out).

A hit skips retrieval and the model; a miss runs the chain and stores its answer with the documents the
chain retrieved as dependencies, so changing one of them (``invalidate_source``, or `InvalidatingVectorStore`
under ``index(...)``) makes the next run recompute. Streams are replayed on a hit; a stream the caller
abandons, or that fails, is never stored.

Example:
    >>> cache = ValkeyCache(namespace="support")  # doctest: +SKIP
    >>> rag = CachedRunnable(retriever_chain, cache=cache, key="support-bot:v3")  # doctest: +SKIP
    >>> rag.invoke("How do I reset my password?")  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from langchain_core.callbacks import AsyncCallbackManagerForChainRun, CallbackManagerForChainRun
from langchain_core.embeddings import Embeddings
from langchain_core.messages import BaseMessageChunk, message_chunk_to_message
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import (
    ensure_config,
    get_async_callback_manager_for_config,
    get_callback_manager_for_config,
    patch_config,
)
from langchain_core.runnables.utils import AddableDict

from valkey_rag_cache import AnswerCache, EntryKey, Hit, Seen, Source
from valkey_rag_cache.keys import digest
from valkey_rag_cache.semantic import LookalikeGuard, SemanticCache, SemanticQuery, Verifier
from valkey_rag_cache.semantic.cache import _DEFAULT_GUARD
from valkey_rag_cache.streams import arecorded, recorded
from valkey_rag_cache.telemetry import warn_once

from .cache import ValkeyCache
from .capture import Captured, capture
from .codec import DecodeError, UnsupportedValue, decode_value, encode_value
from .semantic import semantic_matcher

__all__ = ["CachedRunnable"]

log = logging.getLogger("langchain_valkey_cache")

Input = TypeVar("Input")
Output = TypeVar("Output")

KIND = "lc-chain"
SEMANTIC_KIND = "lc-chain-semantic"
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_MISS = object()


def fingerprint(runnable: Runnable[Any, Any]) -> str:
    """A default identity for a chain: its repr without memory addresses (prompts, model parameters, ...)."""
    return digest(_ADDRESS.sub("", repr(runnable)).encode("utf-8", "surrogatepass"))


def decode_entry(value: Any) -> tuple[Any, list[Any] | None]:
    """(output or `_MISS`, chunks or None) from a stored ``{"o": output, "c": chunks}``; else `DecodeError`.

    Used as the core's ``lookup(decode=...)``: anything it raises makes the entry a counted, removed miss.
    """
    if not isinstance(value, dict) or not value or not set(value) <= {"o", "c"}:
        raise DecodeError("not a stored chain answer")
    chunks = value.get("c", None)
    if "c" in value and not isinstance(chunks, list):
        raise DecodeError("stored chunks are a list")
    output = decode_value(value["o"]) if "o" in value else _MISS
    return output, ([decode_value(c) for c in chunks] if chunks is not None else None)


def decode_output(value: Any) -> tuple[Any]:
    """``(output,)`` for ``invoke``: the stored output, or the stored chunks added up.

    `DecodeError` (the core then removes the entry, keeping the race check for the recomputed answer) when
    the chunks of a stream do not add up to one output.
    """
    output, chunks = decode_entry(value)
    if output is _MISS:
        output = _aggregate(chunks or [])
    if output is _MISS:
        raise DecodeError("the stored chunks do not add up to one output")
    return (output,)


def _aggregate(chunks: list[Any]) -> Any:
    """What ``invoke`` would have returned, from the chunks a stream produced; `_MISS` if they do not add."""
    if not chunks:
        return _MISS
    try:
        out = chunks[0]
        for chunk in chunks[1:]:
            out = out + chunk
    except TypeError:
        return _MISS
    if isinstance(out, BaseMessageChunk):
        return message_chunk_to_message(out)
    if isinstance(out, AddableDict):
        return dict(out)
    return out


@dataclass
class _Ticket:
    """One input's place in the cache, and what its lookup saw (for the write after a miss)."""

    key: EntryKey
    query: SemanticQuery | None = None
    seen: Seen | None = None


class CachedRunnable(Runnable[Input, Output], Generic[Input, Output]):
    """Caches a runnable's output per input; the entry depends on the documents retrieved while it ran.

    Args:
        runnable: the chain to cache (a hit never calls it).
        cache: a `ValkeyCache` (its namespace, TTL policy and metadata keys apply) or an `AnswerCache`.
        key: the chain's identity in the cache, such as ``"support-bot:v3"``. By default a digest of the
            chain's repr (prompts, model parameters); name a version here to share entries across processes
            reliably and to retire them when the chain changes.
        embeddings: a LangChain ``Embeddings``: the question is then also matched by similarity (the
            input when it is a string, else its `semantic_key` field; every other input field, the chain and
            ``configurable`` exactly). Each candidate passes the look-alike guard and is validated like an
            exact hit; an exact match wins.
        similarity_threshold, guard, verifier, band, k, embed_timeout: see `SemanticCache`.

    Inputs and outputs may be JSON values, tuples, messages and documents; others bypass the cache.
    ``config["configurable"]`` is part of the key; ``config["metadata"]["source_ids"]`` adds sources.
    """

    def __init__(
        self,
        runnable: Runnable[Input, Output],
        cache: ValkeyCache | AnswerCache,
        key: str | None = None,
        *,
        embeddings: Embeddings | None = None,
        similarity_threshold: float = 0.9,
        semantic_key: str | None = None,
        guard: LookalikeGuard | None = _DEFAULT_GUARD,
        verifier: Verifier | None = None,
        band: float = 0.05,
        k: int = 4,
        embed_timeout: float | None = 10.0,
    ) -> None:
        self.runnable = runnable
        if isinstance(cache, ValkeyCache):
            self.cache: ValkeyCache | None = cache
            self.core = cache.core
        elif isinstance(cache, AnswerCache):
            self.cache = None
            self.core = cache
        else:
            raise TypeError(f"cache must be a ValkeyCache or an AnswerCache, got {type(cache).__name__}")
        self.key = key if key is not None else fingerprint(runnable)
        self.name = f"Cached{runnable.get_name()}"
        self._capture = capture()
        self.semantic_key = semantic_key
        self.semantic: SemanticCache | None = None
        if embeddings is not None:
            self.semantic = semantic_matcher(
                self.core, embeddings, similarity_threshold, guard, verifier, band, k, embed_timeout
            )

    def __repr__(self) -> str:
        return f"CachedRunnable({self.runnable!r}, key={self.key!r})"

    # -- schema: the wrapped runnable's ----------------------------------------------------------------

    @property
    def InputType(self) -> Any:  # noqa: N802 - LangChain's name
        return self.runnable.InputType

    @property
    def OutputType(self) -> Any:  # noqa: N802
        return self.runnable.OutputType

    def get_input_schema(self, config: RunnableConfig | None = None) -> Any:
        return self.runnable.get_input_schema(config)

    def get_output_schema(self, config: RunnableConfig | None = None) -> Any:
        return self.runnable.get_output_schema(config)

    # -- keys, sources, entries ------------------------------------------------------------------------

    def _entry_key(self, input: Any, config: RunnableConfig) -> EntryKey | None:
        """The entry key of `input` (None: not cacheable); the exact key of its semantic query, if any."""
        ticket = self._ticket(input, config)
        return None if ticket is None else ticket.key

    def _ticket(self, input: Any, config: RunnableConfig) -> _Ticket | None:
        configurable = {k: v for k, v in (config.get("configurable") or {}).items() if not k.startswith("__")}
        try:
            if self.semantic is not None:
                query = self._semantic_query(input, configurable)
                if query is not None:
                    return _Ticket(query.key, query)
            parts = {
                "chain": self.key,
                "input": encode_value(input),
                "configurable": encode_value(configurable),
            }
            return _Ticket(self.core.key(KIND, parts))
        except TypeError as exc:  # an input we cannot key faithfully: run the chain uncached
            log.debug("langchain_valkey_cache: not caching a %s input: %s", type(input).__name__, exc)
            return None

    def _semantic_query(self, input: Any, configurable: dict[str, Any]) -> SemanticQuery | None:
        """The question matched by similarity and the exact partition of everything else; None: exact only."""
        assert self.semantic is not None
        if isinstance(input, str):
            question, rest = input, None
        elif (
            isinstance(input, dict)
            and self.semantic_key is not None
            and isinstance(input.get(self.semantic_key), str)
        ):
            question = input[self.semantic_key]
            rest = encode_value({k: v for k, v in input.items() if k != self.semantic_key})
        else:
            return None
        partition = {
            "chain": self.key,
            "semantic_key": self.semantic_key if not isinstance(input, str) else None,
            "input": rest,
            "configurable": encode_value(configurable),
        }
        return self.semantic.query(SEMANTIC_KIND, question, partition)

    def _lookup(self, ticket: _Ticket, decode: Any) -> Hit[Any] | None:
        if ticket.query is not None and self.semantic is not None:
            found = self.semantic.lookup(ticket.query, decode=decode)
            ticket.seen = ticket.query.seen
            return None if found is None else found.hit
        hit = self.core.lookup(ticket.key, decode=decode)
        ticket.seen = self.core.seen(ticket.key)
        return hit

    async def _alookup(self, ticket: _Ticket, decode: Any) -> Hit[Any] | None:
        if ticket.query is not None and self.semantic is not None:
            found = await self.semantic.alookup(ticket.query, decode=decode)
            ticket.seen = ticket.query.seen
            return None if found is None else found.hit
        hit = await self.core.alookup(ticket.key, decode=decode)
        ticket.seen = self.core.seen(ticket.key)
        return hit

    def _sources(self, run_id: Any, config: RunnableConfig) -> list[Source]:
        captured: Captured = self._capture.run_sources(run_id, config.get("metadata"))
        if self.cache is not None:
            return self.cache.captured_sources(captured)
        return captured.sources(None, "content_type")  # an AnswerCache: ValkeyCache's defaults

    def _entry(self, output: Any = _MISS, chunks: list[Any] | None = None) -> dict[str, Any] | None:
        try:
            entry: dict[str, Any] = {}
            if output is not _MISS:
                entry["o"] = encode_value(output)
            if chunks is not None:
                entry["c"] = [encode_value(c) for c in chunks]
            return entry
        except UnsupportedValue as exc:
            warn_once(log, f"uncachable:{exc}", "langchain_valkey_cache: not caching this answer: %s", exc)
            return None

    def _stream_entry(self, chunks: list[Any]) -> dict[str, Any] | None:
        """A whole stream's entry: its chunks (replayed on a hit) and their sum (for ``invoke``)."""
        return self._entry(_aggregate(chunks), chunks)

    def _store(self, ticket: _Ticket, entry: dict[str, Any] | None, sources: list[Source]) -> None:
        if entry is None:  # values JSON cannot hold: the core logs and skips the write
            return
        if ticket.query is not None and self.semantic is not None:
            self.semantic.store(ticket.query, entry, sources, seen=ticket.seen)
        else:
            self.core.store(ticket.key, entry, sources, seen=ticket.seen)

    async def _astore(self, ticket: _Ticket, entry: dict[str, Any] | None, sources: list[Source]) -> None:
        if entry is None:
            return
        if ticket.query is not None and self.semantic is not None:
            await self.semantic.astore(ticket.query, entry, sources, seen=ticket.seen)
        else:
            await self.core.astore(ticket.key, entry, sources, seen=ticket.seen)

    # -- invoke ----------------------------------------------------------------------------------------

    def invoke(self, input: Input, config: RunnableConfig | None = None, **kwargs: Any) -> Output:
        return self._call_with_config(functools.partial(self._invoke, **kwargs), input, config)

    def _invoke(
        self, input: Input, run_manager: CallbackManagerForChainRun, config: RunnableConfig, **kwargs: Any
    ) -> Output:
        key = self._ticket(input, config)
        if key is None:
            return self.runnable.invoke(input, config, **kwargs)
        hit = self._lookup(key, decode_output)
        if hit is not None:
            return hit.value[0]  # type: ignore[no-any-return]
        output = self.runnable.invoke(input, config, **kwargs)
        self._store(key, self._entry(output), self._sources(run_manager.run_id, config))
        return output

    async def ainvoke(self, input: Input, config: RunnableConfig | None = None, **kwargs: Any) -> Output:
        return await self._acall_with_config(functools.partial(self._ainvoke, **kwargs), input, config)

    async def _ainvoke(
        self,
        input: Input,
        run_manager: AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
        **kwargs: Any,
    ) -> Output:
        key = self._ticket(input, config)
        if key is None:
            return await self.runnable.ainvoke(input, config, **kwargs)
        hit = await self._alookup(key, decode_output)
        if hit is not None:
            return hit.value[0]  # type: ignore[no-any-return]
        output = await self.runnable.ainvoke(input, config, **kwargs)
        await self._astore(key, self._entry(output), self._sources(run_manager.run_id, config))
        return output

    # -- stream: replay a hit, store only a stream that ran to its end ---------------------------------

    def stream(self, input: Input, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Output]:
        config = ensure_config(config)
        run_manager = get_callback_manager_for_config(config).on_chain_start(
            None, input, name=config.get("run_name") or self.get_name(), run_id=config.pop("run_id", None)
        )
        child = patch_config(config, callbacks=run_manager.get_child())
        chunks: list[Any] = []
        try:
            key = self._ticket(input, config)
            if key is None:
                for chunk in self.runnable.stream(input, child, **kwargs):
                    chunks.append(chunk)
                    yield chunk
            else:
                # The generator may resume in another context: the ticket keeps what the lookup saw.
                hit = self._lookup(key, decode_entry)
                if hit is not None:
                    output, stored = hit.value
                    chunks = stored if stored is not None else [output]
                    yield from chunks
                else:
                    # The generator may resume in another context: the ticket keeps what the lookup saw.
                    def complete(got: list[Any]) -> None:
                        self._store(key, self._stream_entry(got), self._sources(run_manager.run_id, config))

                    yield from recorded(self.runnable.stream(input, child, **kwargs), complete, chunks)
        except BaseException as exc:  # GeneratorExit too: an abandoned stream is never stored
            run_manager.on_chain_error(exc)
            raise
        final = _aggregate(chunks)
        run_manager.on_chain_end(None if final is _MISS else final)

    async def astream(
        self, input: Input, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Output]:
        config = ensure_config(config)
        run_manager = await get_async_callback_manager_for_config(config).on_chain_start(
            None, input, name=config.get("run_name") or self.get_name(), run_id=config.pop("run_id", None)
        )
        child = patch_config(config, callbacks=run_manager.get_child())
        chunks: list[Any] = []
        try:
            key = self._ticket(input, config)
            if key is None:
                async for chunk in self.runnable.astream(input, child, **kwargs):
                    chunks.append(chunk)
                    yield chunk
            else:
                hit = await self._alookup(key, decode_entry)
                if hit is not None:
                    output, stored = hit.value
                    chunks = stored if stored is not None else [output]
                    for chunk in chunks:
                        yield chunk
                else:

                    async def acomplete(got: list[Any]) -> None:
                        entry = self._stream_entry(got)
                        await self._astore(key, entry, self._sources(run_manager.run_id, config))

                    async for chunk in arecorded(
                        self.runnable.astream(input, child, **kwargs), acomplete, chunks
                    ):
                        yield chunk
        except BaseException as exc:
            await run_manager.on_chain_error(exc)
            raise
        final = _aggregate(chunks)
        await run_manager.on_chain_end(None if final is _MISS else final)
