"""Backend health: which errors degrade to a miss, one warning per outage, and a short back-off."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from valkey.exceptions import (
    AskError,
    ClusterError,
    ConnectionError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TimeoutError,
    TryAgainError,
)

from .errors import CacheError
from .glide_driver import as_valkey_error
from .resharding import is_resharding

__all__ = ["Health", "is_backend_error"]

log = logging.getLogger("valkey_rag_cache")

# Replies that say the server cannot serve now (busy with a script, loading, a failover, a cluster that is
# down or resharding, out of memory), as opposed to an answer about the request or the data.
_UNAVAILABLE = (
    "BUSY",
    "LOADING",
    "READONLY",
    "MASTERDOWN",
    "CLUSTERDOWN",
    "TRYAGAIN",
    "MOVED",
    "ASK",
    "OOM",
    "NOREPLICAS",
    "MISCONF",
)


def is_backend_error(exc: BaseException) -> bool:
    """The backend cannot serve (network, timeout, a server that is down or busy): only these trip the
    back-off. An error about the request or the data (WRONGTYPE, a counter that is not one, a refused
    command, a failing script) is a miss for that call alone.

    >>> is_backend_error(TimeoutError()), is_backend_error(ResponseError("WRONGTYPE Operation against a key"))
    (True, False)
    """
    exc = as_valkey_error(exc)  # a Valkey GLIDE error: sorted as its valkey-py twin (glide_driver.py)
    if isinstance(exc, ConnectionError | TimeoutError | OSError | CacheError | ClusterError):
        return True
    if is_resharding(exc):  # a slot moving between shards ("non local key", "... rehashing of the slot")
        return True
    if isinstance(exc, OutOfMemoryError | ReadOnlyError | TryAgainError | AskError):  # AskError: MOVED too
        return True
    return isinstance(exc, ResponseError) and str(exc).startswith(_UNAVAILABLE)


@dataclass
class Health:
    """Counts failures and keeps calls away from a backend that just failed, for `retry_after` seconds."""

    retry_after: float = 1.0
    errors: int = 0
    skipped: int = 0
    dropped_writes: int = 0
    outages: int = 0
    _down_until: float = 0.0
    _down: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _script_errors: set[str] = field(default_factory=set, repr=False)

    def should_skip(self) -> bool:
        if self._down and time.monotonic() < self._down_until:
            with self._lock:
                self.skipped += 1
            return True
        return False

    def failed(self, exc: BaseException, write: bool = False) -> None:
        with self._lock:
            self.errors += 1
            if write:
                self.dropped_writes += 1
            self._down_until = time.monotonic() + self.retry_after
            first = not self._down
            self._down = True
            if first:
                self.outages += 1
        if first:
            log.warning(
                "valkey_rag_cache: Valkey unavailable (%s: %s); lookups are misses and writes are dropped "
                "until it answers again",
                type(exc).__name__,
                exc,
            )

    def not_configured(self, write: bool = False) -> None:
        """A call skipped because no Valkey is configured (already said once, with what to set)."""
        with self._lock:
            self.skipped += 1
            if write:
                self.dropped_writes += 1

    def script_failed(self, exc: BaseException, write: bool = False) -> None:
        with self._lock:
            self.errors += 1
            if write:
                self.dropped_writes += 1
            first = str(exc) not in self._script_errors
            if len(self._script_errors) < 100:
                self._script_errors.add(str(exc))
        if first:
            log.error("valkey_rag_cache: a cache script failed; treated as a miss: %s", exc, exc_info=exc)

    def dropped(self) -> None:
        """A write not attempted because its lookup did not reach the backend."""
        with self._lock:
            self.dropped_writes += 1

    def succeeded(self) -> None:
        if self._down:
            with self._lock:
                was_down, self._down = self._down, False
            if was_down:
                log.warning("valkey_rag_cache: Valkey answers again; caching resumed")

    def snapshot(self) -> dict[str, int]:
        return {
            "errors": self.errors,
            "skipped": self.skipped,
            "dropped_writes": self.dropped_writes,
            "outages": self.outages,
        }
