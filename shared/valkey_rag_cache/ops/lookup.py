"""Lookup: one `lookup.lua` call on the entry, and what its reply means (`Lookup`).

A hit is one round trip with one script. A cluster group seen for the first time (no clock) is made known
to invalidations before anything can be cached in it.

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
    Lookup(hit=None, seen=Seen(era='era1', counter=3, invalidations=2), status=0)
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ..envelope import Hit, body_of, decode_body
from ..keys import EntryKey
from ..scripts import script
from ..seen import Seen
from .env import Env, fresh_era
from .groups import add_group, retire_call
from .requests import Call, Cmd, Eval, FanOut, Flow, data_error, text

__all__ = ["BAD", "HIT", "MISS", "NO_CLOCK", "STALE", "Lookup", "LookupArgs", "count", "discard", "lookup"]

# Lookup statuses returned by lookup.lua.
HIT, MISS, BAD, STALE, NO_CLOCK = 1, 0, 2, 3, 4


@dataclass(slots=True)  # a value; not frozen for the hit path's sake (see `requests.Eval`)
class Lookup:
    """What a lookup found: the hit (or None), the clock it saw (for the write after a miss), the status."""

    hit: Hit[Any] | None
    seen: Seen | None
    status: int


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

    __slots__ = ("entry_base", "head", "keys", "namespace", "tail")

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


def _consts(env: Env, namespace: str) -> _Consts:
    consts: _Consts | None = env.memo.get(namespace)
    if consts is None:
        if len(env.memo) > 1024:
            env.memo.clear()
        consts = env.memo[namespace] = _Consts(env, namespace)
    return consts


def lookup(env: Env, key: EntryKey) -> Flow[Lookup]:
    """Read the entry and its group's clock in one script; the body of a hit is decoded here."""
    c = _consts(env, key.namespace)
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


def count(env: Env, group: str, field_name: str) -> Flow[None]:
    """Count one event in the group's counters (when counting); a damaged counter is left to the scripts."""
    if env.count_stats:
        try:
            yield Cmd(("HINCRBY", env.schema.stats(group), field_name, 1))
        except Exception as exc:
            if not data_error(exc):
                raise
