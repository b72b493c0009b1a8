"""The operations every cache offers, as typed protocols, and the one mixin that gives them to an adapter.

`Operations` is what `AnswerCache` and each framework's cache share: invalidation and housekeeping, sync and
async, with the same signatures. Code that only invalidates (vector store and docstore wrappers) asks for
the smaller `Invalidates`, so it takes any of them. An adapter's cache holds an `AnswerCache` as ``core`` and
inherits `CacheOperations`, whose methods *are* the core's (each is `forward`-ed from `AnswerCache` with its
signature and docstring), so they cannot drift from the core; the adapter writes only what its framework
needs (``lookup``/``update``, ``clear``). Its constructor takes the URL and `CoreOptions`, so every adapter
accepts the core's options with one definition.

Example:
    >>> from valkey_rag_cache import AnswerCache
    >>> def retire(cache: Invalidates, ids: list[str]) -> int:
    ...     return cache.invalidate_sources(ids)
    >>> core: Operations = AnswerCache(namespace="docs")  # any cache type-checks here
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, TypedDict, TypeVar, Unpack

from .cache import AnswerCache, Closing
from .doctor import DoctorReport
from .sources import Source, SourceScope
from .ttl import TTLPolicy, TTLValue

__all__ = ["CacheOperations", "CoreOptions", "Invalidates", "Operations", "make_core"]

P = ParamSpec("P")
R = TypeVar("R")


class Invalidates(Protocol):
    """Invalidate documents, or everything, sync and async: what store wrappers need from a cache."""

    def invalidate_sources(self, source_ids: Iterable[str]) -> int: ...
    async def ainvalidate_sources(self, source_ids: Iterable[str]) -> int: ...
    def invalidate_all(self) -> None: ...
    async def ainvalidate_all(self) -> None: ...


class Operations(Invalidates, Protocol):
    """Invalidation and housekeeping, sync and async: `AnswerCache` and every adapter's cache."""

    def invalidate_source(self, source_id: str) -> int: ...
    async def ainvalidate_source(self, source_id: str) -> int: ...
    def invalidate_namespace(self, namespace: str | None = None) -> None: ...
    async def ainvalidate_namespace(self, namespace: str | None = None) -> None: ...
    def register(self) -> bool: ...
    async def aregister(self) -> bool: ...
    def dependents(self, source_id: str) -> list[str]: ...
    async def adependents(self, source_id: str) -> list[str]: ...
    def purge(self, count: int = 1000) -> int: ...
    async def apurge(self, count: int = 1000) -> int: ...
    def drop_namespace(self, namespace: str | None = None) -> int: ...
    async def adrop_namespace(self, namespace: str | None = None) -> int: ...
    def reset_stats(self, namespace: str | None = None) -> None: ...
    async def areset_stats(self, namespace: str | None = None) -> None: ...
    def stats(self) -> dict[str, Any]: ...
    async def astats(self) -> dict[str, Any]: ...
    def doctor(self) -> DoctorReport: ...
    async def adoctor(self) -> DoctorReport: ...
    def close(self) -> None: ...
    async def aclose(self) -> None: ...
    def sources(
        self, ids: Iterable[Source | str] | Source | str, content_type: str | None = None
    ) -> SourceScope: ...


class HasCore(Protocol):
    core: AnswerCache


def forward(method: Callable[Concatenate[AnswerCache, P], R]) -> Callable[Concatenate[HasCore, P], R]:
    """`method` of `AnswerCache`, called on ``self.core``: same signature, same docstring."""

    @functools.wraps(method)
    def call(self: HasCore, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return method(self.core, *args, **kwargs)

    return call


def aforward(
    method: Callable[Concatenate[AnswerCache, P], Awaitable[R]],
) -> Callable[Concatenate[HasCore, P], Coroutine[Any, Any, R]]:
    """The async twin of `forward` (the result is a coroutine function, as the core's is)."""

    @functools.wraps(method)
    async def call(self: HasCore, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return await method(self.core, *args, **kwargs)

    return call


def make_core(core: AnswerCache | None = None, /, **options: Any) -> AnswerCache:
    """The given core, or a new `AnswerCache` from the options; an option left at None is the core's default.

    Passing a core and any option raises `TypeError`: the options would silently not apply.

    >>> make_core(url=None, namespace="docs", timeout=None)
    AnswerCache(prefix='llmcache', namespace='docs')
    >>> make_core(make_core(), namespace="other")
    Traceback (most recent call last):
    ...
    TypeError: pass either core= or the connection and cache options, not both (got namespace)
    """
    given = {k: v for k, v in options.items() if v is not None}
    if core is None:
        return AnswerCache(given.pop("url", None), **given)
    if given:
        names = ", ".join(sorted(given))
        raise TypeError(f"pass either core= or the connection and cache options, not both (got {names})")
    return core


class CoreOptions(TypedDict, total=False):
    """The core's options as every adapter's cache takes them (after the URL); None is the core's default.

    ``client``: a ready-made valkey client (sync, asyncio or cluster) instead of the URL. ``prefix``: every
    key starts with ``prefix:`` (default ``llmcache``). ``namespace``: where the entries live (default
    ``default``), ``:``-separated. ``ttl_policy``: content type -> TTL overrides, or a `TTLPolicy`.
    ``default_content_type``: the content type (hence TTL) of answers built on no typed source. ``timeout``:
    socket timeout in seconds (a slower backend turns lookups into misses). ``cluster``: force cluster mode
    on or off. ``retry_after``: seconds to leave a failed backend alone. ``embedded``: ``False`` forbids the
    fallback to the shared embedded Valkey when no URL is given. ``confined``: keep to this namespace's tree
    (an ACL user limited to one tenant's keys). ``core``: an existing `AnswerCache` to share; then the URL
    and every other option are refused. See `AnswerCache` for each.
    """

    client: Any
    prefix: str | None
    namespace: str | None
    ttl_policy: TTLPolicy | Mapping[str, TTLValue] | None
    default_content_type: str | None
    timeout: float | None
    cluster: bool | None
    retry_after: float | None
    embedded: bool | None
    confined: bool | None
    core: AnswerCache | None


class CacheOperations(Closing):
    """Base of an adapter's cache: built from the core's options, with the core's operations on ``self.core``.

    Each operation below is the `AnswerCache` method of that name, so signatures, docstrings and behaviour
    are the core's. ``clear`` is left to the adapter: frameworks give it their own signature.

    Example:
        >>> class MyFrameworkCache(CacheOperations):
        ...     def __init__(self, url: str | None = None, **options: Unpack[CoreOptions]) -> None:
        ...         super().__init__(url, **options)  # then the framework's own options
        >>> MyFrameworkCache(namespace="docs").core  # doctest: +SKIP
        AnswerCache(prefix='llmcache', namespace='docs')
    """

    core: AnswerCache
    make_core = staticmethod(make_core)

    def __init__(self, url: str | None = None, **options: Unpack[CoreOptions]) -> None:
        core = options.pop("core", None)
        self.core = make_core(core, url=url, **options)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(prefix={self.core.schema.prefix!r}, namespace={self.core.namespace!r})"

    @property
    def namespace(self) -> str:
        """The namespace this cache reads and writes (its core's)."""
        return self.core.namespace

    invalidate_source = forward(AnswerCache.invalidate_source)
    ainvalidate_source = aforward(AnswerCache.ainvalidate_source)
    invalidate_sources = forward(AnswerCache.invalidate_sources)
    ainvalidate_sources = aforward(AnswerCache.ainvalidate_sources)
    invalidate_namespace = forward(AnswerCache.invalidate_namespace)
    ainvalidate_namespace = aforward(AnswerCache.ainvalidate_namespace)
    invalidate_all = forward(AnswerCache.invalidate_all)
    ainvalidate_all = aforward(AnswerCache.ainvalidate_all)
    register = forward(AnswerCache.register)
    aregister = aforward(AnswerCache.aregister)
    dependents = forward(AnswerCache.dependents)
    adependents = aforward(AnswerCache.adependents)
    purge = forward(AnswerCache.purge)
    apurge = aforward(AnswerCache.apurge)
    drop_namespace = forward(AnswerCache.drop_namespace)
    adrop_namespace = aforward(AnswerCache.adrop_namespace)
    reset_stats = forward(AnswerCache.reset_stats)
    areset_stats = aforward(AnswerCache.areset_stats)
    stats = forward(AnswerCache.stats)
    astats = aforward(AnswerCache.astats)
    doctor = forward(AnswerCache.doctor)
    adoctor = aforward(AnswerCache.adoctor)
    close = forward(AnswerCache.close)
    aclose = aforward(AnswerCache.aclose)
    sources = forward(AnswerCache.sources)


if TYPE_CHECKING:  # mypy proves the core, and the mixin as an adapter gets it, offer every operation
    _core: type[Operations] = AnswerCache
    _mixin: type[Operations] = CacheOperations
