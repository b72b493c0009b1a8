"""Lookup: one `lookup.lua` call on the entry, or the script-free `peek`, and what a reply means (`Lookup`).

A hit is one round trip: a pipeline (`peek`, over a direct line) or one script. A cluster group seen for the
first time (no clock) is made known to invalidations before anything can be cached in it.

Example:
    >>> from valkey_rag_cache import TTLPolicy
    >>> from valkey_rag_cache.keys import KeySchema
    >>> from valkey_rag_cache.ops.env import Env
    >>> env = Env(KeySchema("p"), TTLPolicy({}, "documentation"))
    >>> flow = lookup(env, KeySchema("p").entry_key("qa", "hi", "docs"))
    >>> next(flow).script.name
    'lookup'
    >>> try:
    ...     flow.send([MISS, b"era1 3 2"])
    ... except StopIteration as done:
    ...     print(done.value)
    Lookup(hit=None, seen=Seen(era='era1', counter=3, invalidations=2), status=0, tally=None)
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from valkey.exceptions import ValkeyError

from ..envelope import MAGIC, Hit, body_of, decode_body
from ..health import is_backend_error
from ..keys import EntryKey
from ..scripts import script
from ..seen import UNREACHED, Seen
from .env import Env, fresh_era
from .groups import add_group, retire_call
from .requests import Call, Cmd, Eval, FanOut, Flow, data_error, text

__all__ = [
    "BAD",
    "HIT",
    "MISS",
    "NO_CLOCK",
    "STALE",
    "Lookup",
    "LookupArgs",
    "count",
    "consts",
    "count_many",
    "discard",
    "lookup",
    "peek",
    "peek_calls",
    "peek_outcome",
    "stamped",
]

# Lookup statuses returned by lookup.lua.
HIT, MISS, BAD, STALE, NO_CLOCK = 1, 0, 2, 3, 4


@dataclass(slots=True)  # a value; not frozen for the hit path's sake (see `requests.Eval`)
class Lookup:
    """What a lookup found: the hit (or None), the clock it saw (for the write after a miss), the status."""

    hit: Hit[Any] | None
    seen: Seen | None
    status: int
    # Decided without a script (`peek`): the counter (stats key, field) for the caller to count; None: the
    # script counted it.
    tally: tuple[str, bytes] | None = None


@dataclass(frozen=True, slots=True)
class LookupArgs:
    """lookup.lua's packed argument (``LOOKUP_ARGS`` in common.lua: the same fields, in this order)."""

    base: str  # the group's base, its member of the index of groups
    tokens: str  # the base of the group's tokens
    fresh_era: str  # the era of a clock the script has to create
    count_stats: str  # '1' or '0'
    token_ttl: int

    def pack(self) -> str:
        return " ".join([str(getattr(self, name)) for name in _LOOKUP_FIELDS])


_LOOKUP_FIELDS = tuple(f.name for f in fields(LookupArgs))


class _Consts:
    """The per-namespace parts of every lookup, built and encoded once (valkey-py passes bytes through)."""

    __slots__ = (
        "clock",
        "entry_base",
        "head",
        "hit_tally",
        "hits",
        "keys",
        "miss_tally",
        "namespace",
        "no_count",
        "probe",
        "stats",
        "tail",
    )

    def __init__(self, env: Env, namespace: str) -> None:
        tree = env.schema.tree(namespace)
        self.entry_base = tree.entry_base(namespace)
        packed = LookupArgs(
            tree.base, tree.tokens, "\0", "1" if env.count_stats else "0", env.token_ttl
        ).pack()
        self.head, self.tail = packed.split("\0")  # the fresh era goes in between, per call
        declared: list[str] = (
            [tree.clock, tree.stats] if env.no_index else [tree.clock, tree.stats, env.schema.groups]
        )
        self.keys = [k.encode() for k in declared]
        self.namespace = namespace.encode("utf-8", "surrogatepass")
        # `peek`: the index membership to check first (standalone, unconfined), the clock, the counters.
        # (Arguments as bytes: nothing to encode per call.)
        self.probe = (
            []
            if env.no_index
            else [Cmd(("SISMEMBER", env.schema.groups.encode(), tree.base.encode()), fixed=True)]
        )
        self.clock = Cmd(("HMGET", tree.clock.encode(), b"e", b"c", b"i"), fixed=True)
        self.stats, self.hits = tree.stats, b"hits:" + self.namespace
        self.no_count = Cmd(("HINCRBY", self.stats, self.hits, 0), fixed=True)  # a write that counts nothing
        counted = env.count_stats  # what `peek` decides is counted by its caller (`Lookup.tally`)
        self.hit_tally = (tree.stats, self.hits) if counted else None
        self.miss_tally = (tree.stats, b"misses:" + self.namespace) if counted else None


def consts(env: Env, namespace: str) -> _Consts:
    consts: _Consts | None = env.memo.get(namespace)
    if consts is None:
        if len(env.memo) > 1024:
            env.memo.clear()
        consts = env.memo[namespace] = _Consts(env, namespace)
    return consts


def lookup(env: Env, key: EntryKey) -> Flow[Lookup]:
    """Read the entry and its group's clock in one script; the body of a hit is decoded here."""
    c = consts(env, key.namespace)
    # KEYS: the entry, the group's clock and stats (and the index of groups on a standalone server); the small
    # arguments travel as one string: few arguments to encode on every hit (all keys share one hash slot).
    res = yield Eval(
        script("lookup"),
        [c.entry_base + key.digest, *c.keys],
        [(c.head + fresh_era() + c.tail).encode(), c.namespace],
    )
    status = int(res[0])
    if status == NO_CLOCK:
        return (yield from _first_use(env, key))
    era, counter, invalidations = text(res[1]).rsplit(" ", 2)
    seen = Seen(era, int(counter), int(invalidations))
    if status != HIT:
        return Lookup(None, seen, status)
    hit = decode_body(body_of(res[2]))
    if hit is None:  # the script counted a hit; discard() makes it a bad miss
        yield from discard(env, key)
        return Lookup(None, seen, BAD)
    return Lookup(hit, seen, HIT)


def peek(env: Env, key: EntryKey, flush: list[Cmd] | None = None) -> Flow[Lookup]:
    """A lookup without the script, for a client that pipelines cheaply (`direct.py`); else `lookup`.

    One pipeline reads the group's membership in the index of groups (standalone: a cluster's lookups never
    read it, as its script does not), the entry, then the clock. An entry
    written under the clock's current era and invalidation count has seen no invalidation since (every
    invalidation in a group bumps that count before it replaces a token: `check_entry` in common.lua, whose
    fast path this is), so it is a hit; a missing entry under a sound clock is a plain miss. Anything else
    (a group not listed, a clock missing or damaged, an entry of an older count or not ours, an error
    reply) goes to the script, which compares tokens and repairs. The reads are not atomic, and need not
    be: the clock is read after the entry, and a clock that still matches the entry's stamp then saw no
    invalidation since the entry was written; the membership is read first, and a group listed anew after
    an invalidation skipped it was retired (a new era) inside the same script that listed it.

    The counters are not touched here: a `Lookup` with a `tally` is for the caller to count, and
    `flush` (HINCRBY calls of earlier such lookups) rides along in the same pipeline. The pipeline always
    carries a write (those counts, or an increment by 0), as the script is one: a replica refuses it
    (READONLY) and a paused primary holds it (``CLIENT PAUSE WRITE``, as in a failover), so a demoted or
    frozen primary answers no lookup from a copy an invalidation elsewhere may already have overtaken.
    """
    try:
        replies: list[Any] | ValkeyError = yield FanOut([*peek_calls(env, key, flush)], raw=True)
    except ValkeyError as exc:
        replies = exc
    found = peek_outcome(env, key, replies)
    return found if found is not None else (yield from lookup(env, key))


def peek_calls(env: Env, key: EntryKey, flush: list[Cmd] | None = None) -> list[Cmd]:
    """`peek`'s pipeline: the counts (or an increment by 0), the index membership, the entry, the clock."""
    c = consts(env, key.namespace)
    calls: list[Cmd] = [*flush] if flush else [c.no_count]
    calls += c.probe
    calls += (Cmd(("GET", c.entry_base + key.digest)), c.clock)
    return calls


def peek_outcome(env: Env, key: EntryKey, replies: list[Any] | ValkeyError) -> Lookup | None:
    """What `peek`'s replies (or the error one of them was) decide; None: the script decides.

    A backend error on a standalone server is raised (the lookup did not happen). In a cluster, any error
    goes to the script: its call follows the slot, and refreshes the slot map after a connection error.
    """
    if isinstance(replies, ValkeyError):
        # An error reply (a key of the wrong type, a damaged counter, a command an ACL refuses): the script
        # reads, repairs and counts.
        if is_backend_error(replies) and not env.cluster:
            raise replies
        return None
    c = consts(env, key.namespace)
    if c.probe and not replies[-3]:
        return None  # not listed: the script lists the group and retires it
    value, clock = replies[-2], replies[-1]
    seen = _clock(clock)
    if seen is None:
        return None
    if value is None:
        return Lookup(None, seen, MISS, c.miss_tally)
    if type(value) is not bytes or not stamped(value, clock):
        return None
    hit = decode_body(body_of(value))
    if hit is None:
        return None  # the script counts it as a hit, and discard() as bad data
    return Lookup(hit, seen, HIT, c.hit_tally)


def stamped(stored: bytes, clock: list[bytes]) -> bool:
    """Was the entry written under the clock's era and invalidation count? (its header's first line)

    `clock`: the clock's reply as `_clock` accepts it. Compared as the bytes the script writes; anything
    else (another count, a header that is not ours) is for the script to read.

    >>> clock = [b"e1", b"9", b"7"]
    >>> stamped(b"vrc1\\ne1 7\\na 3\\n\\n{}", clock), stamped(b"vrc1\\ne1 70\\na 3\\n\\n{}", clock)
    (True, False)
    """
    return stored.startswith(MAGIC + clock[0] + b" " + clock[2] + b"\n")


# The last clock reply `_clock` accepted and what it read: most lookups read the clock as the one before.
_last_clock: tuple[list[bytes], Seen] = ([], UNREACHED)


def _clock(reply: Any) -> Seen | None:
    # The clock as ``clock_get`` accepts it: an era of letters and digits (at most 40), two small counters.
    global _last_clock
    if type(reply) is not list or len(reply) != 3:
        return None
    last_reply, last_seen = _last_clock  # (one read: another thread may replace it)
    if reply == last_reply:  # the same bytes: the same (immutable) Seen, its checks already passed
        return last_seen
    era, counter, invalidations = reply
    if type(era) is not bytes or type(counter) is not bytes or type(invalidations) is not bytes:
        return None
    if not (era.isalnum() and counter.isdigit() and invalidations.isdigit()):  # (False when empty)
        return None
    if len(era) > 40 or len(counter) > 14 or len(invalidations) > 14:
        return None
    seen = Seen(era.decode(), int(counter), int(invalidations))
    _last_clock = (list(reply), seen)  # a copy: the memo never changes with the reply it came from
    return seen


def _first_use(env: Env, key: EntryKey) -> Flow[Lookup]:
    # Cluster, first use of this group (or its clock was evicted): make it known to invalidations before
    # anything can be cached in it, then start its clock. A confined tree has no index entry: a new clock (a
    # new era) retires what the tree held all the same.
    if env.confined_to is None:
        yield from add_group(env, key.group)
    clock = yield retire_call(env, key.group, force=False)
    yield from count(env, key.group, "misses:" + key.namespace)
    return Lookup(None, Seen(text(clock[0]), int(clock[1]), int(clock[2])), MISS)


def discard(env: Env, key: EntryKey) -> Flow[None]:
    """Remove an entry the caller could not decode after a hit: bad data and a miss, not a hit."""
    calls: list[Call] = [Cmd(("UNLINK", env.schema.entry(key)))]
    if env.count_stats:
        stats, ns = env.schema.stats(key.group), key.namespace
        calls += [
            Cmd(("HINCRBY", stats, f"{name}:{ns}", n))
            for name, n in (("bad", 1), ("hits", -1), ("misses", 1))
        ]
    try:
        yield FanOut(calls)  # one pipeline: every key shares the group's slot
    except Exception as exc:  # counters no writer of ours made: the next script call repairs them
        if not data_error(exc):
            raise


def count_many(env: Env, calls: list[Cmd]) -> Flow[None]:
    """Send counts kept by the caller (HINCRBY calls); a damaged counter is left to the scripts."""
    try:
        yield FanOut(list(calls), raw=True)
    except Exception as exc:
        if not data_error(exc):
            raise


def count(env: Env, group: str, field_name: str) -> Flow[None]:
    """Count one event in the group's counters (when counting); a damaged counter is left to the scripts."""
    if env.count_stats:
        try:
            yield Cmd(("HINCRBY", env.schema.stats(group), field_name, 1))
        except Exception as exc:
            if not data_error(exc):
                raise
