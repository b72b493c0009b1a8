"""Hooks for metrics, traces and debug logs: nothing here runs on a lookup unless something listens.

The cache calls `observed()` once per lookup or write; only when it is true (an observer is installed, or
the ``valkey_rag_cache`` logger is enabled for DEBUG) does it time the call and report it here. Observers get
namespaces, outcomes, durations and counts, never a prompt, a value or a source id.

Example:
    >>> class Printer:
    ...     def on_lookup(self, namespace, result, start_ns, duration_ns, sources): print(namespace, result)
    ...     def on_write(self, namespace, result, start_ns, duration_ns, sources): pass
    ...     def on_invalidation(self, kind, retired): pass
    ...     def on_backend_error(self, operation): pass
    >>> add_observer(Printer())  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

__all__ = ["Observer", "add_observer", "observed", "observers", "remove_observer", "warn_once"]

log = logging.getLogger("valkey_rag_cache")

# Outcomes, as observers see them (bounded sets: they become metric labels).
LOOKUP_RESULTS = ("hit", "miss", "stale", "bad", "error")  # error: the backend was down or skipped
WRITE_RESULTS = ("stored", "refused", "dropped", "uncachable")
INVALIDATION_KINDS = ("source", "namespace", "all", "drop")


class Observer(Protocol):
    """What an observer implements; every method must be cheap and must not raise."""

    def on_lookup(self, namespace: str, result: str, start_ns: int, duration_ns: int, sources: int) -> None:
        """`result` is one of `LOOKUP_RESULTS`; `sources` is the hit's number of sources (0 on a miss)."""

    def on_write(self, namespace: str, result: str, start_ns: int, duration_ns: int, sources: int) -> None:
        """`result` is one of `WRITE_RESULTS`."""

    def on_invalidation(self, kind: str, retired: int | None) -> None:
        """`kind` is one of `INVALIDATION_KINDS`; `retired` is how many entries it deleted, when known."""

    def on_backend_error(self, operation: str) -> None:
        """`operation` is ``lookup``, ``write`` or ``admin``."""


_observers: tuple[Observer, ...] = ()
_lock = threading.Lock()


def add_observer(observer: Observer) -> None:
    """Report every cache's lookups, writes, invalidations and backend errors in this process."""
    global _observers
    with _lock:
        if observer not in _observers:
            _observers = (*_observers, observer)


def remove_observer(observer: Observer) -> None:
    global _observers
    with _lock:
        _observers = tuple(o for o in _observers if o is not observer)


def observers() -> tuple[Observer, ...]:
    return _observers


def observed() -> bool:
    """Whether lookups and writes should be timed and reported (cheap: a tuple test and a cached level)."""
    return bool(_observers) or log.isEnabledFor(logging.DEBUG)


def lookup(namespace: str, digest: str, result: str, start_ns: int, end_ns: int, sources: int) -> None:
    duration = end_ns - start_ns
    if log.isEnabledFor(logging.DEBUG):
        log.debug(
            "valkey_rag_cache: lookup %s namespace=%s key=%s sources=%d %dus",
            result,
            namespace,
            digest,
            sources,
            duration // 1000,
        )
    for o in _observers:
        _safely(o.on_lookup, namespace, result, start_ns, duration, sources)


def write(namespace: str, digest: str, result: str, start_ns: int, end_ns: int, sources: int) -> None:
    duration = end_ns - start_ns
    if log.isEnabledFor(logging.DEBUG):
        log.debug(
            "valkey_rag_cache: write %s namespace=%s key=%s sources=%d %dus",
            result,
            namespace,
            digest,
            sources,
            duration // 1000,
        )
    for o in _observers:
        _safely(o.on_write, namespace, result, start_ns, duration, sources)


def invalidation(kind: str, retired: int | None) -> None:
    for o in _observers:
        _safely(o.on_invalidation, kind, retired)


def backend_error(operation: str) -> None:
    for o in _observers:
        _safely(o.on_backend_error, operation)


_broken: set[str] = set()


def _safely(fn: object, *args: object) -> None:
    # An observer's bug must never turn into an exception inside the user's model call.
    try:
        fn(*args)  # type: ignore[operator]
    except Exception as exc:
        warn_once(log, f"observer:{type(exc).__name__}", "valkey_rag_cache: an observer failed: %r", exc)


_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def warn_once(logger: logging.Logger, kind: str, message: str, *args: object) -> None:
    """Log a warning the first time `kind` happens in this process for `logger`; later ones go to DEBUG.

    >>> warn_once(logging.getLogger("demo"), "uncachable:Foo", "not caching a %s", "Foo")  # doctest: +SKIP
    """
    ident = (logger.name, kind)
    with _warned_lock:
        first = ident not in _warned
        if first and len(_warned) < 1000:
            _warned.add(ident)
    if first:
        logger.warning(message + " (said once per kind; later ones are logged at DEBUG)", *args)
    elif logger.isEnabledFor(logging.DEBUG):
        logger.debug(message, *args)


def value_kind(exc: BaseException) -> str:
    """A short, bounded name for why a value could not be cached: the type the error names, or the error."""
    text = str(exc)
    if "Object of type " in text:
        return text.split("Object of type ", 1)[1].split(" ", 1)[0]
    return type(exc).__name__
