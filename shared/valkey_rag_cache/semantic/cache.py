"""`SemanticCache`: answers to similar questions from the core `AnswerCache`, never stale, never foreign.

A lookup, in order:

1. the exact entry of (partition, question), with the core's lookup: an exact match always wins;
2. the question's embedding (a miss and one warning if the model raises, times out or returns a vector of
   the wrong dimension, NaN or infinity);
3. the nearest cached questions *of the same exact partition* from the index (the partition is a digest of
   everything matched exactly: model and parameters, tools, chain or engine, filters, the rest of the
   input; two tenants, models or filters never share a candidate);
4. for each candidate, best first: the look-alike guard, the verifier when the similarity is near the
   threshold, then the core's one-round-trip lookup of the candidate's entry key, which checks its sources,
   namespaces and version like any exact hit. The key is derived from the partition and the candidate's
   question, so an index can only point inside its partition; a candidate whose entry is gone is dropped.

The write after a miss is the core's write, checked against what the exact lookup saw (an invalidation that
overtook the answer refuses it), then the vector is added to the index, in the namespace tree's slot.

Example:
    >>> sem = SemanticCache(AnswerCache(namespace="support"), embed=model.embed)  # doctest: +SKIP
    >>> q = sem.query("qa", "How long is the refund window?", partition={"model": "m"})  # doctest: +SKIP
    >>> if (hit := sem.lookup(q)) is None:  # doctest: +SKIP
    ...     sem.store(q, "30 days.", sources=["kb/refunds.md"])
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..cache import AnswerCache
from ..decoding import decoded
from ..envelope import Hit
from ..keys import EntryKey, digest, encode_parts
from ..ops import lookup as lookup_op
from ..ops.lookup import HIT
from ..seen import Seen
from ..sources import Source
from ..ttl import TTLValue
from .guard import LookalikeGuard
from .index import Candidate, Partition, SemanticIndex
from .mirror import MirrorIndex
from .vectors import as_unit_vector

__all__ = ["SemanticCache", "SemanticHit", "SemanticQuery", "Verifier"]

log = logging.getLogger("valkey_rag_cache")

Verifier = Callable[[str, str], "bool | Awaitable[bool]"]
_DEFAULT_GUARD = LookalikeGuard()
_SHARED_INDEX = MirrorIndex()  # one mirror per partition per process, whichever cache object asks
_FAILURE_MEMORY = 30.0  # seconds a failed embedding is not retried for the same question (the write after)
_embed_pool: ThreadPoolExecutor | None = None
_embed_pool_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _embed_pool
    with _embed_pool_lock:
        if _embed_pool is None:
            _embed_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="valkey-rag-cache-embed")
        return _embed_pool


@dataclass(frozen=True, slots=True)
class SemanticHit:
    """A hit: the core's `Hit`, how similar its question was (1.0 for an exact match) and that question."""

    hit: Hit[Any]
    similarity: float
    question: str
    exact: bool

    @property
    def value(self) -> Any:
        return self.hit.value


@dataclass
class SemanticQuery:
    """One question in one exact partition: its entry key, and what its lookup found out for the write."""

    kind: str
    question: str
    partition: Any
    key: EntryKey
    part: Partition
    seen: Seen | None = None
    vector: np.ndarray | None = field(default=None, repr=False)
    embedded: bool = False  # the embedding was attempted (a failure is not retried by the write)


class SemanticCache:
    """Semantic matching over an `AnswerCache`, with the same invalidation, TTLs and isolation.

    Args:
        cache: the core holding the entries (its namespace, TTL policy and prefix apply).
        embed: text -> vector (a LangChain ``embed_query``, a LlamaIndex ``get_query_embedding``...).
        aembed: the async twin of `embed`; by default `embed` runs in a worker thread.
        threshold: the cosine similarity at or above which a candidate may be served (see `calibrate`).
        guard: the look-alike check (numbers, dates, negations, names); None turns it off.
        verifier: ``(new question, cached question) -> bool`` (or an awaitable), asked only for candidates
            within `band` of the threshold: those in ``[threshold - band, threshold + band)`` are served
            only if it says yes (an LLM judge, a rule of yours); without a verifier there is no band.
        band: the width of that band on each side of the threshold.
        embedder: names the embedding model; vectors of different embedders are never compared.
        k: candidates tried per lookup, best first.
        embed_timeout: seconds an embedding may take before the lookup gives up (a miss), or None.
        index: where candidates come from (default: the process-wide `MirrorIndex`).
    """

    def __init__(
        self,
        cache: AnswerCache,
        embed: Callable[[str], Sequence[float]],
        *,
        aembed: Callable[[str], Awaitable[Sequence[float]]] | None = None,
        threshold: float = 0.9,
        guard: LookalikeGuard | None = _DEFAULT_GUARD,
        verifier: Verifier | None = None,
        band: float = 0.05,
        embedder: str = "",
        dimension: int | None = None,
        k: int = 4,
        embed_timeout: float | None = 10.0,
        index: SemanticIndex | None = None,
    ) -> None:
        if not isinstance(cache, AnswerCache):
            raise TypeError(f"cache must be an AnswerCache, got {type(cache).__name__}")
        if not callable(embed):
            raise TypeError("embed must be a callable: text -> vector")
        if not (isinstance(threshold, int | float) and -1.0 <= threshold <= 1.0) or math.isnan(threshold):
            raise ValueError(f"threshold is a cosine similarity in [-1, 1], got {threshold!r}")
        if not 0.0 <= band < 1.0:
            raise ValueError(f"band must be in [0, 1), got {band!r}")
        if k < 1:
            raise ValueError("k must be at least 1")
        self.cache = cache
        self.embed = embed
        self.aembed = aembed
        self.threshold = float(threshold)
        self.guard = guard
        self.verifier = verifier
        self.band = float(band) if verifier is not None else 0.0
        self.embedder = embedder
        self.dimension = dimension
        self.k = k
        self.embed_timeout = embed_timeout
        self.index = index if index is not None else _SHARED_INDEX
        self.problems: dict[str, int] = {}
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        # Recent questions' embeddings (None: it failed, at that time), so the write after a lookup, which
        # may come in another call (LangChain's lookup, then update), neither embeds again nor retries.
        self._vectors: OrderedDict[str, tuple[np.ndarray | None, float]] = OrderedDict()

    def __repr__(self) -> str:
        return f"SemanticCache({self.cache!r}, threshold={self.threshold}, embedder={self.embedder!r})"

    # -- queries ---------------------------------------------------------------------------------------

    def query(
        self, kind: str, question: str, partition: Any = None, namespace: str | None = None
    ) -> SemanticQuery:
        """The query of `question` in the exact partition `partition` (JSON: everything matched exactly)."""
        if not isinstance(question, str):
            raise TypeError(f"a question is a string, got {type(question).__name__}")
        ns = namespace or self.cache.namespace
        key = self.cache.key(kind, {"p": partition, "q": question}, namespace=ns)
        return SemanticQuery(kind, question, partition, key, self._partition(kind, partition, ns))

    def _partition(self, kind: str, partition: Any, namespace: str) -> Partition:
        dig = digest(encode_parts(kind, {"p": partition, "embedder": self.embedder}))
        schema = self.cache.schema
        return Partition(
            namespace, dig, schema.semantic_vectors(namespace, dig), schema.semantic_log(namespace, dig)
        )

    def _candidate_key(self, q: SemanticQuery, question: str) -> EntryKey:
        # Derived, never read from the index: a candidate can only name an entry of this very partition.
        return self.cache.key(q.kind, {"p": q.partition, "q": question}, namespace=q.key.namespace)

    # -- problems: a miss and one warning per kind -----------------------------------------------------

    def _problem(self, kind: str, detail: str = "") -> None:
        with self._lock:
            self.problems[kind] = self.problems.get(kind, 0) + 1
            first = kind not in self._warned
            self._warned.add(kind)
        if first:
            log.warning(
                "valkey_rag_cache: semantic lookup skipped (%s)%s; a miss, and this warning is shown once",
                kind,
                f": {detail}" if detail else "",
            )

    def _accept_vector(self, raw: Any) -> np.ndarray | None:
        vec, problem = as_unit_vector(raw, self.dimension)
        if problem is not None:
            self._problem(
                f"embedding {problem}", f"expected {self.dimension} numbers" if problem == "dimension" else ""
            )
            return None
        if self.dimension is None:
            self.dimension = int(vec.size)  # type: ignore[union-attr]
        return vec

    def _remember_vector(self, question: str, vec: np.ndarray | None) -> None:
        with self._lock:
            self._vectors[question] = (vec, time.monotonic())
            self._vectors.move_to_end(question)
            while len(self._vectors) > 1024:
                self._vectors.popitem(last=False)

    def _known_vector(self, q: SemanticQuery) -> bool:
        if q.embedded:
            return True
        with self._lock:
            known = self._vectors.get(q.question)
        if known is not None and (known[0] is not None or time.monotonic() - known[1] < _FAILURE_MEMORY):
            q.vector, q.embedded = known[0], True
        return q.embedded

    def _embed(self, q: SemanticQuery) -> np.ndarray | None:
        if self._known_vector(q):
            return q.vector
        q.embedded = True
        try:
            if self.embed_timeout is None:
                raw = self.embed(q.question)
            else:
                raw = _pool().submit(self.embed, q.question).result(timeout=self.embed_timeout)
        except FutureTimeout:
            self._problem("embedding timed out", f"after {self.embed_timeout} s")
            self._remember_vector(q.question, None)
            return None
        except Exception as exc:  # any failure of the user's model is a miss, never an exception
            self._problem("embedding failed", type(exc).__name__)
            self._remember_vector(q.question, None)
            return None
        q.vector = self._accept_vector(raw)
        self._remember_vector(q.question, q.vector)
        return q.vector

    async def _aembed(self, q: SemanticQuery) -> np.ndarray | None:
        if self._known_vector(q):
            return q.vector
        q.embedded = True
        try:
            call = (
                self.aembed(q.question)
                if self.aembed is not None
                else asyncio.to_thread(self.embed, q.question)
            )
            raw = await (
                asyncio.wait_for(call, self.embed_timeout) if self.embed_timeout is not None else call
            )
        except TimeoutError:
            self._problem("embedding timed out", f"after {self.embed_timeout} s")
            self._remember_vector(q.question, None)
            return None
        except Exception as exc:
            self._problem("embedding failed", type(exc).__name__)
            self._remember_vector(q.question, None)
            return None
        q.vector = self._accept_vector(raw)
        self._remember_vector(q.question, q.vector)
        return q.vector

    # -- candidates ------------------------------------------------------------------------------------

    @property
    def _floor(self) -> float:
        return self.threshold - self.band

    def _screen(self, q: SemanticQuery, c: Candidate) -> bool | None:
        """True: try it; False: skip it; None: ask the verifier."""
        if c.question == q.question:
            return False  # the exact entry, which just missed
        if self.guard is not None and not self.guard.compatible(q.question, c.question):
            return False
        if self.verifier is not None and c.similarity < self.threshold + self.band:
            return None
        return c.similarity >= self.threshold

    def _verdict(self, answer: Any) -> bool:
        return answer is True or (isinstance(answer, bool | np.bool_) and bool(answer))

    def _verify(self, q: SemanticQuery, c: Candidate) -> bool:
        try:
            answer = self.verifier(q.question, c.question)  # type: ignore[misc]
            if inspect.isawaitable(answer):
                self._problem("verifier is async", "use alookup() with an async verifier")
                _close(answer)
                return False
            return self._verdict(answer)
        except Exception as exc:
            self._problem("verifier failed", type(exc).__name__)
            return False

    async def _averify(self, q: SemanticQuery, c: Candidate) -> bool:
        try:
            answer = self.verifier(q.question, c.question)  # type: ignore[misc]
            if inspect.isawaitable(answer):
                answer = await answer
            return self._verdict(answer)
        except Exception as exc:
            self._problem("verifier failed", type(exc).__name__)
            return False

    def _accept(self, result: Any, decode: Callable[[Any], Any] | None) -> tuple[Hit[Any] | None, bool, bool]:
        """(hit, gone, bad): the validated candidate's hit; `gone` when its entry can no longer be served,
        `bad` when it was read but the caller could not decode it (the entry is then discarded)."""
        if result is None:
            return None, False, False  # backend trouble: a miss, the index stays as it is
        if result.status != HIT or result.hit is None:
            return None, True, False
        hit = result.hit
        if decode is not None:
            value = decoded(decode, hit.value)  # the core's one rule: see `decoding`
            if value is None:
                return None, True, True
            hit = Hit(value[0], hit.sources, hit.content_type, hit.created_at)
        return hit, False, False

    # -- lookups ---------------------------------------------------------------------------------------

    def lookup(self, q: SemanticQuery, decode: Callable[[Any], Any] | None = None) -> SemanticHit | None:
        """The exact hit, else the best validated semantic one, else None (never raises for bad input)."""
        exact = self.cache.lookup(q.key, decode)
        if exact is not None:
            return SemanticHit(exact, 1.0, q.question, True)
        q.seen = self.cache.seen(q.key)
        vec = self._embed(q)
        if vec is None:
            return None
        candidates = self.cache._try(None, False, self.index.search, q.part, vec, self.k, self._floor)
        for c in candidates or ():
            ok = self._screen(q, c)
            if ok is None:
                ok = self._verify(q, c)
            if not ok:
                continue
            key = self._candidate_key(q, c.question)
            hit, gone, bad = self._accept(self.cache._try(None, False, lookup_op.lookup, key), decode)
            if hit is not None:
                return SemanticHit(hit, c.similarity, c.question, False)
            if bad:
                self.cache.discard(key)
            if gone:
                self.cache._try(None, False, self.index.forget, q.part, c.digest)
        return None

    async def alookup(
        self, q: SemanticQuery, decode: Callable[[Any], Any] | None = None
    ) -> SemanticHit | None:
        exact = await self.cache.alookup(q.key, decode)
        if exact is not None:
            return SemanticHit(exact, 1.0, q.question, True)
        q.seen = self.cache.seen(q.key)
        vec = await self._aembed(q)
        if vec is None:
            return None
        candidates = await self.cache._atry(None, False, self.index.search, q.part, vec, self.k, self._floor)
        for c in candidates or ():
            ok = self._screen(q, c)
            if ok is None:
                ok = await self._averify(q, c)
            if not ok:
                continue
            key = self._candidate_key(q, c.question)
            hit, gone, bad = self._accept(await self.cache._atry(None, False, lookup_op.lookup, key), decode)
            if hit is not None:
                return SemanticHit(hit, c.similarity, c.question, False)
            if bad:
                await self.cache.adiscard(key)
            if gone:
                await self.cache._atry(None, False, self.index.forget, q.part, c.digest)
        return None

    # -- writes ----------------------------------------------------------------------------------------

    def store(
        self,
        q: SemanticQuery,
        value: Any,
        sources: Iterable[Source | str] | None = None,
        *,
        ttl: TTLValue | None = None,
        content_type: str | None = None,
        seen: Seen | None = None,
    ) -> bool:
        """Store the answer to `q` (checked against its lookup's view), then make it findable by meaning."""
        stored = self.cache.store(
            q.key,
            value,
            sources,
            ttl=ttl,
            content_type=content_type,
            seen=seen if seen is not None else q.seen,
        )
        if stored:
            vec = self._embed(q)
            if vec is not None:
                self.cache._try(None, True, self.index.add, q.part, q.key.digest, q.question, vec)
        return stored

    async def astore(
        self,
        q: SemanticQuery,
        value: Any,
        sources: Iterable[Source | str] | None = None,
        *,
        ttl: TTLValue | None = None,
        content_type: str | None = None,
        seen: Seen | None = None,
    ) -> bool:
        stored = await self.cache.astore(
            q.key,
            value,
            sources,
            ttl=ttl,
            content_type=content_type,
            seen=seen if seen is not None else q.seen,
        )
        if stored:
            vec = await self._aembed(q)
            if vec is not None:
                await self.cache._atry(None, True, self.index.add, q.part, q.key.digest, q.question, vec)
        return stored


def _close(awaitable: Any) -> None:
    close = getattr(awaitable, "close", None)
    if callable(close):
        close()
