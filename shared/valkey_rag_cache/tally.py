"""Counts of lookups decided without a script (`ops.lookup.peek`), sent with the next call.

A script counts its own hit or miss where it runs. A lookup answered by a plain pipeline would need one more
command to count it; instead the count waits here and rides along with the next lookup's pipeline. `stats()`
sends what is pending before reading, a background thread sends what waited a second (an idle process's last
lookups), and so does the interpreter's exit: counters in Valkey trail a live process by about a second at
most, and lose counts only when the process dies without exiting (or the call that carried them failed:
counts are not sent twice).

Example:
    >>> tally = Tally()
    >>> tally.add("p:{kb}:stats", b"hits:kb"), tally.add("p:{kb}:stats", b"hits:kb")
    (True, False)
    >>> [c.args for c in tally.take()], tally.take()
    ([('HINCRBY', 'p:{kb}:stats', b'hits:kb', 2)], [])
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import time
import weakref
from typing import Any

from .ops.requests import Cmd

__all__ = ["FLUSH_AFTER", "Tally", "count_call", "flush_soon"]


class Tally:
    """Pending counter increments, by (stats key, field); thread-safe."""

    __slots__ = ("_counts", "_lock", "__weakref__")

    def __init__(self) -> None:
        self._counts: dict[tuple[str, bytes], int] = {}
        self._lock = threading.Lock()
        _tallies.add(self)

    def __bool__(self) -> bool:
        return bool(self._counts)

    def add(self, stats_key: str, field: bytes) -> bool:
        """Count one; True when nothing was pending before (the caller then asks for a flush soon)."""
        with self._lock:
            first = not self._counts
            self._counts[(stats_key, field)] = self._counts.get((stats_key, field), 0) + 1
        return first

    def take(self, only: str | None = None) -> list[Cmd]:
        """The pending counts as HINCRBY calls, forgotten here (the caller sends them); `only`: those of
        this stats key alone (a cluster pipeline reaches one hash slot)."""
        if not self._counts:
            return []
        with self._lock:
            if only is None:
                counts, self._counts = self._counts, {}
            else:
                counts = {k: self._counts.pop(k) for k in [k for k in self._counts if k[0] == only]}
        return [count_call(key, field, n) for (key, field), n in counts.items()]


_SMALL: dict[tuple[str, bytes, int], Cmd] = {}


def count_call(key: str, field: bytes, n: int) -> Cmd:
    # A small count repeats from call to call (one hit since the last lookup): made once, and a driver may
    # pack it once (`Cmd.fixed`).
    if n > 4:
        return Cmd(("HINCRBY", key, field, n))
    cmd = _SMALL.get((key, field, n))
    if cmd is None:
        cmd = Cmd(("HINCRBY", key, field, n), fixed=True)
        if len(_SMALL) < 4096:
            _SMALL[(key, field, n)] = cmd
    return cmd


FLUSH_AFTER = 1.0  # seconds a count may wait for a call to carry it

# Caches with counts waiting, by id (a cheap test on every lookup). Held strongly until flushed: a cache
# dropped right after its last lookup lives a second longer, and its counts still go.
_due: dict[int, Any] = {}
_wake = threading.Event()
_started = threading.Lock()
_thread: threading.Thread | None = None
_tallies: weakref.WeakSet[Tally] = weakref.WeakSet()


def flush_soon(owner: Any) -> None:
    """Call ``owner._flush_counts_quietly()`` within `FLUSH_AFTER` seconds (and at exit), from a thread."""
    global _thread
    if id(owner) in _due:
        return
    _due[id(owner)] = owner
    if _thread is None:
        with _started:
            if _thread is None:
                _thread = threading.Thread(target=_flusher, name="valkey-rag-cache-counts", daemon=True)
                _thread.start()
    _wake.set()


def _flusher() -> None:
    while True:
        _wake.wait()
        time.sleep(FLUSH_AFTER)
        _wake.clear()
        _flush_all()


@atexit.register
def _flush_all() -> None:
    for key in list(_due):
        owner = _due.pop(key, None)  # (the flusher and the exit may both be here)
        if owner is not None:
            with contextlib.suppress(Exception):  # quiet: a server already gone takes the counts with it
                owner._flush_counts_quietly()


def _after_fork_in_child() -> None:
    # The parent sends what was pending when it forked; the child starts with nothing pending, its own
    # flusher (the parent's thread does not exist here) and fresh locks (one may have been held mid-fork).
    global _thread, _wake, _started
    _thread, _wake, _started = None, threading.Event(), threading.Lock()
    _due.clear()
    for tally in list(_tallies):
        tally._counts, tally._lock = {}, threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
