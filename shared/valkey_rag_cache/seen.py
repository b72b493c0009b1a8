"""What each lookup saw, so the write that follows a miss can refuse an answer an invalidation overtook.

The rule, in one place: **a lookup's view belongs to the context that made it** (a thread's context, an
asyncio task's, one run with ``copy_context().run``). The write of the same key in that context takes it
(once); a hit drops it, since nothing is written after a hit. A context copied from another (a task, or a
thread given a copy) reads its origin's views, as they are when it writes, but never takes or changes them:
its own lookups go to a record of its own, made the first time it needs one. A lookup that did not reach
Valkey leaves `UNREACHED`, which refuses the write (no clock says whether an invalidation overtook it).

Every call is O(1): one dict operation on the context's own record, made lazily. A context holds the newest
`PER_CONTEXT` views; when more lookups wait for their writes (a text model's batch looks every prompt up
first), the oldest view goes to a floor per group: the oldest view of each group is kept and checks the
writes whose own view was dropped (an older view only refuses more). Floors older than `FLOOR_SECONDS` are
ignored, so a long-lived context does not refuse writes for good.

Example:
    >>> ident = (0, "docs", "digest")
    >>> remember(ident, Seen("era1", 3, 1), hit=False)
    >>> take(ident), take(ident)
    (Seen(era='era1', counter=3, invalidations=1), None)
    >>> remember(ident, None, hit=False)  # the lookup did not reach Valkey
    >>> take(ident).reached
    False
    >>> import contextvars
    >>> def batch() -> int:  # a text model's batch looks every prompt up before any write
    ...     for i in range(3):
    ...         remember((0, "docs", f"prompt{i}"), Seen("era1", 3, 1), hit=False)
    ...     return pending()
    >>> contextvars.Context().run(batch)  # views the context's lookups hold for their writes
    3
"""

from __future__ import annotations

import time
from contextvars import ContextVar, Token
from dataclasses import dataclass

from . import slots

__all__ = [
    "FLOOR_SECONDS",
    "PER_CONTEXT",
    "UNREACHED",
    "Ident",
    "Seen",
    "peek",
    "pending",
    "remember",
    "take",
]


@dataclass(frozen=True, slots=True, init=False)
class Seen:
    """The group clock as a lookup read it; a write that follows checks nothing newer was invalidated."""

    era: str
    counter: int
    invalidations: int

    def __init__(self, era: str, counter: int, invalidations: int) -> None:
        _seen_era(self, era)  # one per lookup: see `slots`
        _seen_counter(self, counter)
        _seen_invalidations(self, invalidations)

    @property
    def reached(self) -> bool:
        """False for `UNREACHED`: the lookup never read the clock, so nothing can check a write against it."""
        return bool(self.era)


_seen_era, _seen_counter, _seen_invalidations = slots.setters(Seen)

# What a lookup that did not reach Valkey saw (timeout, refused connection, the back-off after a failure, a
# script error). An era is never empty, so no clock matches it; a write carrying it is refused.
UNREACHED = Seen("", 0, 0)

Ident = tuple[int, str, str]  # (cache instance, namespace, entry digest)
PER_CONTEXT = 512
FLOOR_SECONDS = 600.0
MAX_DEPTH = 8  # origins a record reads through; deeper copies start from a flat snapshot (rare)
_now = time.monotonic


class _Record:
    """One context's views (insertion order: oldest first) and floors, over the record it was copied from."""

    __slots__ = ("depth", "floor", "origin", "token", "views")

    def __init__(self, origin: _Record | None) -> None:
        self.views: dict[Ident, Seen] = {}
        self.floor: dict[tuple[int, str], tuple[Seen, float]] = {}
        self.origin = origin
        self.depth: int = 0 if origin is None else origin.depth + 1
        self.token: Token[_Record] | None = None


_RECORD: ContextVar[_Record] = ContextVar("valkey_rag_cache_seen")


def _is_own(rec: _Record) -> bool:
    # A token resets only in the context that set it: a copied context sees its origin's record, and fails.
    assert rec.token is not None
    try:
        _RECORD.reset(rec.token)
    except ValueError:
        return False
    rec.token = _RECORD.set(rec)
    return True


def _own() -> _Record:
    """This context's record, made the first time it needs one (over the record it sees, if any)."""
    rec = _RECORD.get(None)
    if rec is not None and _is_own(rec):
        return rec
    new = _Record(rec)
    if new.depth > MAX_DEPTH:
        _flatten(new)
    new.token = _RECORD.set(new)
    return new


def _flatten(rec: _Record) -> None:
    # A chain of copies as deep as a task that keeps spawning its successor: read its origins once, here.
    chain, origin = [], rec.origin
    while origin is not None:
        chain.append(origin)
        origin = origin.origin
    for older in reversed(chain):
        rec.views.update(older.views)
        rec.floor.update(older.floor)
    while len(rec.views) > PER_CONTEXT:
        del rec.views[next(iter(rec.views))]
    rec.origin, rec.depth = None, 0


def remember(ident: Ident, seen: Seen | None, hit: bool) -> None:
    """Keep what a lookup of `ident` saw for its write (`None`: the lookup did not reach Valkey)."""
    if hit:
        rec = _RECORD.get(None)
        if rec is not None and ident in rec.views and _is_own(rec):
            del rec.views[ident]  # nothing will be written after a hit
        return
    # Forgetting a lookup that did not reach Valkey would make its write look like a write without a lookup,
    # stored unchecked: an invalidation that returned meanwhile would be overtaken. It is refused instead.
    rec = _own()
    views = rec.views
    views.pop(ident, None)  # the newest view wins, and goes last: a lookup and its write are sequential
    views[ident] = UNREACHED if seen is None else seen
    if len(views) > PER_CONTEXT:
        oldest = next(iter(views))
        _keep_floor(rec, oldest, views.pop(oldest))


def _keep_floor(rec: _Record, ident: Ident, seen: Seen) -> None:
    group = (ident[0], ident[1].split(":", 1)[0])
    old = rec.floor.get(group)
    now = _now()
    if (
        old is None
        or now - old[1] >= FLOOR_SECONDS
        or (old[0].era == seen.era and seen.counter < old[0].counter)
    ):
        rec.floor[group] = (seen, now)


def take(ident: Ident) -> Seen | None:
    """The view the write of `ident` is checked against (taken from this context's own views); None: none."""
    rec = _RECORD.get(None)
    if rec is None:
        return None
    seen = rec.views.get(ident)
    if seen is not None:
        if _is_own(rec):
            del rec.views[ident]
        return seen
    origin = rec.origin
    while origin is not None:  # the contexts this one was copied from: read, never taken
        seen = origin.views.get(ident)
        if seen is not None:
            return seen
        origin = origin.origin
    return _floor(rec, ident)


def _floor(rec: _Record | None, ident: Ident) -> Seen | None:
    group: tuple[int, str] | None = None
    while rec is not None:
        if rec.floor:
            group = group or (ident[0], ident[1].split(":", 1)[0])
            kept = rec.floor.get(group)
            if kept is not None and _now() - kept[1] < FLOOR_SECONDS:
                return kept[0]
        rec = rec.origin
    return None


def peek(ident: Ident) -> Seen | None:
    """What the last lookup of `ident` visible from this context saw, left in place (`AnswerCache.seen`)."""
    rec = _RECORD.get(None)
    while rec is not None:
        seen = rec.views.get(ident)
        if seen is not None:
            return seen
        rec = rec.origin
    return None


def pending() -> int:
    """How many views this context's own lookups hold for their writes (its origins' are not counted)."""
    rec = _RECORD.get(None)
    return len(rec.views) if rec is not None and _is_own(rec) else 0
