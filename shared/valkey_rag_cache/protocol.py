"""Sans-IO operations of the cache, written once for sync and async.

Each operation is a generator that yields the Valkey calls it needs (`Eval`, `Cmd`, `FanOut`, ...) and
receives their results; `store.py` drives it over valkey-py or valkey.asyncio. Nothing here does I/O.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Generator, Iterable
from dataclasses import dataclass, field
from typing import Any

from .envelope import Hit, decode_body, encode_body
from .errors import InvalidationError
from .keys import EntryKey, KeySchema, escape, glob_escape, source_digest, validate_namespace
from .scripts import Script, script
from .sources import Source
from .telemetry import value_kind, warn_once
from .ttl import TTLPolicy, TTLValue

log = logging.getLogger("valkey_rag_cache")

__all__ = ["Eval", "Cmd", "FanOut", "Primaries", "NodeCmd", "Seen", "UNREACHED", "Lookup", "Context", "Flow"]

# One write in this many also lengthens source tokens' TTLs and prunes dead dependency-set members: the
# rest skip that upkeep (neither is needed for correctness; `purge()` does the rest).
HOUSEKEEPING_EVERY = 8
_WRITES = itertools.count()

# Source tokens invalidated by one script call.
INVALIDATE_BATCH = 500

# Lookup statuses returned by lookup.lua.
HIT, MISS, BAD, STALE, NO_CLOCK = 1, 0, 2, 3, 4


@dataclass(frozen=True)
class Eval:
    """Run a script; every key shares one hash slot."""

    script: Script
    keys: list[str]
    args: list[str | int | float | bytes]


@dataclass(frozen=True)
class Cmd:
    """One command, routed by its first key in a cluster."""

    args: tuple[Any, ...]


@dataclass(frozen=True)
class FanOut:
    """Independent calls, sent as one pipeline per shard; the results come back in order."""

    calls: list[Eval | Cmd]


@dataclass(frozen=True)
class Primaries:
    """The primaries to scan: opaque handles (one `None` on a standalone server)."""


@dataclass(frozen=True)
class NodeCmd:
    """One command on one primary (a handle from `Primaries`), or on the primary that owns `key`."""

    args: tuple[Any, ...]
    node: Any = None
    key: str | None = None


Op = Eval | Cmd | FanOut | Primaries | NodeCmd
Flow = Generator[Op, Any, Any]


@dataclass(frozen=True, slots=True)
class Seen:
    """The group clock as a lookup read it; a write that follows checks nothing newer was invalidated."""

    era: str
    counter: int
    invalidations: int

    @property
    def reached(self) -> bool:
        """False for `UNREACHED`: the lookup never read the clock, so nothing can check a write against it."""
        return bool(self.era)


# What a lookup that did not reach Valkey saw (timeout, refused connection, the back-off after a failure, a
# script error). An era is never empty, so no clock matches it; a write carrying it is refused.
UNREACHED = Seen("", 0, 0)


@dataclass(frozen=True, slots=True)
class Lookup:
    hit: Hit[Any] | None
    seen: Seen | None
    status: int


_ERA_PREFIX = os.urandom(6).hex()
_ERA_COUNT = itertools.count(1)


def _reseed_era() -> None:
    global _ERA_PREFIX
    _ERA_PREFIX = os.urandom(6).hex()


os.register_at_fork(after_in_child=_reseed_era)  # a forked worker must not repeat its parent's eras


def _fresh_era() -> str:
    # Used whenever a clock is (re)created, so tokens never repeat after an eviction: unique per call
    # (48 random bits per process, then a counter), without a system call on every lookup.
    return f"{_ERA_PREFIX}{next(_ERA_COUNT):x}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass
class Context:
    """Everything the operations need to know: key layout, TTL policy, and whether this is a cluster."""

    schema: KeySchema
    policy: TTLPolicy
    cluster: bool = False
    count_stats: bool = True
    # A confined cache keeps to one namespace tree (this top-level namespace): it never touches the index of
    # groups, and its invalidations, dependents, stats and purge cover its tree only (see `AnswerCache`).
    confined_to: str | None = None
    clock: Any = field(default=time.time)
    _consts: dict[tuple[str, bool, int], Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def token_ttl(self) -> int:
        # Tokens must outlive the entries that recorded them; writes lengthen them further when needed.
        return self.policy.max_ttl

    # -- lookups and writes ----------------------------------------------------------------------------

    def _lookup_consts(self, namespace: str) -> tuple[str, str, str, bytes]:
        # The per-namespace parts of every lookup, built and encoded once (valkey-py passes bytes through).
        ident = (namespace, self.count_stats, self.token_ttl)
        consts = self._consts.get(ident)
        if consts is None:
            s = self.schema
            group = namespace.split(":", 1)[0]
            consts = (
                s.entry_base(namespace),
                s.group_base(group) + " ",
                f" {'1' if self.count_stats else '0'} {self.token_ttl}",
                namespace.encode("utf-8", "surrogatepass"),
            )
            if len(self._consts) > 1024:
                self._consts.clear()
            self._consts[ident] = consts
        return consts

    def lookup(self, key: EntryKey) -> Flow:
        s, g = self.schema, key.group
        entry_base, head, tail, ns = self._lookup_consts(key.namespace)
        # Clock, stats and token keys derive from the group base inside the script, and the small arguments
        # travel as one string: few arguments to encode on every hit (all keys share the entry's hash slot).
        entry = entry_base + key.digest
        keys = [entry] if self._no_index else [entry, s.groups]
        res = yield Eval(script("lookup"), keys, [(head + _fresh_era() + tail).encode(), ns])
        status = int(res[0])
        if status == NO_CLOCK:
            # Cluster, first use of this group (or its clock was evicted): make it known to invalidations
            # before anything can be cached in it, then start its clock. A confined tree has no index entry:
            # a new clock (a new era) retires what the tree held all the same.
            if self.confined_to is None:
                yield from self._add_group(s.group_base(g))
            clock = yield Eval(
                script("register"), [s.clock(g)], [s.token_base(g), _fresh_era(), self.token_ttl, "0"]
            )
            yield from self._count(g, "misses:" + key.namespace)
            return Lookup(None, Seen(_text(clock[0]), int(clock[1]), int(clock[2])), MISS)
        era, counter, invalidations = _text(res[1]).rsplit(" ", 2)
        seen = Seen(era, int(counter), int(invalidations))
        if status != HIT:
            return Lookup(None, seen, status)
        value = res[2]
        sep = b"\n\n" if isinstance(value, bytes) else "\n\n"  # a client may decode responses to str
        hit = decode_body(value[value.find(sep) + 2 :])
        if hit is None:  # the script counted a hit; discard() makes it a bad miss
            yield from self.discard(key)
            return Lookup(None, seen, BAD)
        return Lookup(hit, seen, HIT)

    def discard(self, key: EntryKey) -> Flow:
        """Remove an entry the caller could not decode after a hit: bad data and a miss, not a hit."""
        calls: list[Eval | Cmd] = [Cmd(("UNLINK", self.schema.entry(key)))]
        if self.count_stats:
            stats, ns = self.schema.stats(key.group), key.namespace
            calls += [
                Cmd(("HINCRBY", stats, f"{name}:{ns}", n))
                for name, n in (("bad", 1), ("hits", -1), ("misses", 1))
            ]
        try:
            yield FanOut(calls)  # one pipeline: every key shares the group's slot
        except Exception as exc:  # counters no writer of ours made: the next script call repairs them
            if not _data_error(exc):
                raise

    def _count(self, group: str, field_name: str) -> Flow:
        if self.count_stats:
            try:
                yield Cmd(("HINCRBY", self.schema.stats(group), field_name, 1))
            except Exception as exc:
                if not _data_error(exc):
                    raise

    def write(
        self,
        key: EntryKey,
        value: Any,
        sources: tuple[Source, ...],
        seen: Seen | None,
        ttl: TTLValue | None = None,
        content_type: str | None = None,
    ) -> Flow:
        s, g = self.schema, key.group
        if seen is not None and not seen.reached:
            # Its lookup did not reach Valkey: an invalidation may have returned since the answer was
            # computed, and no clock says whether one did. Refused, never stored unchecked.
            return False
        if content_type is not None:
            types: list[str | None] = [content_type]
        else:
            types = [src.content_type for src in sources]
        seconds = self.policy.ttl_for(types, ttl)
        resolved_type = content_type or _narrowest(self.policy, types)
        try:
            body = encode_body(value, tuple(src.id for src in sources), resolved_type, self.clock())
        except (TypeError, ValueError) as exc:  # not JSON (or NaN): the caller's answer is returned uncached
            warn_once(
                log,
                "uncachable:" + value_kind(exc),
                "valkey_rag_cache: not caching a value JSON cannot hold: %s",
                exc,
            )
            return None  # falsy like a refusal; None tells observers it was never sent
        if seen is None and self.cluster and self.confined_to is None:
            # A write without a lookup still has to make its group known to invalidations first; a group the
            # index had lost may have been skipped by one, so it is retired (standalone: inside the script).
            added = yield from self._add_group(s.group_base(g))
            if added:
                retire: list[Any] = [s.token_base(g), _fresh_era(), self.token_ttl, "1"]
                yield Eval(script("register"), [s.clock(g)], retire)
        # The script derives the group's keys and the namespace levels' token names itself, and takes the
        # small arguments (all made of key-safe characters) as one string: few arguments to encode per write.
        small = " ".join(
            [
                s.group_base(g),
                escape(key.namespace),
                str(seconds),
                seen.era if seen else "-",
                str(seen.counter if seen else 0),
                str(seen.invalidations if seen else 0),
                _fresh_era(),
                key.digest,
                str(self.token_ttl),
                "1" if self.count_stats else "0",
                "1" if next(_WRITES) % HOUSEKEEPING_EVERY == 0 else "0",
                *[source_digest(src.id) for src in sources],
            ]
        )
        keys = [s.entry(key)] if self._no_index else [s.entry(key), s.groups]
        args: list[Any] = [small, key.namespace, body]
        stored = yield Eval(script("write"), keys, args)
        return bool(stored)

    # -- invalidation ----------------------------------------------------------------------------------

    @property
    def _no_index(self) -> bool:
        # The scripts take the index of groups as a second key only on an unconfined standalone server.
        return self.cluster or self.confined_to is not None

    def _groups(self) -> Flow:
        """The bases (``prefix:{group}:``) of every group in use (a confined cache's own only).

        Only members spelled exactly as `KeySchema.group_base` writes them are followed (a tampered member
        could name keys outside the prefix); others are removed. An index of the wrong type is rebuilt.
        """
        s = self.schema
        if self.confined_to is not None:
            return [s.group_base(self.confined_to)]
        try:
            members = yield Cmd(("SMEMBERS", s.groups))
        except Exception as exc:
            if not _wrong_type(exc):
                raise
            members = yield from self._rebuild_groups()
        bases, foreign = [], []
        for m in members:
            text = _utf8(m)
            if text is not None and s.group_of_base(text) is not None:
                bases.append(text)
            else:
                foreign.append(m)
        if foreign:
            log.warning(
                "valkey_rag_cache: ignoring and removing %d invalid members of %s", len(foreign), s.groups
            )
            yield Cmd(("SREM", s.groups, *foreign))
        return sorted(bases)

    def _add_group(self, base: str) -> Flow:
        """Add a group to the index of groups (rebuilt first when it has the wrong type); True when new."""
        s = self.schema
        try:
            added = yield Cmd(("SADD", s.groups, base))
        except Exception as exc:
            if not _wrong_type(exc):
                raise
            yield from self._rebuild_groups()
            added = yield Cmd(("SADD", s.groups, base))
        return bool(int(added))

    def _rebuild_groups(self) -> Flow:
        """Replace an index of groups of the wrong type with the groups whose clocks a SCAN finds.

        A group without a clock needs no member: its next lookup or write registers it and retires what it
        held.
        """
        s = self.schema
        found: list[str] = []
        nodes = yield Primaries()
        for node in nodes:
            cursor: Any = 0
            while True:
                pattern = glob_escape(s.prefix) + ":{*}:clock"
                cursor, keys = yield NodeCmd(("SCAN", cursor, "MATCH", pattern, "COUNT", 1000), node=node)
                for raw in keys:
                    parts = s.parse_group_key(_utf8(raw) or "")
                    if parts and parts[1] == "clock" and s.group_of_base(parts[0]) is not None:
                        found.append(parts[0])
                if int(cursor) == 0:
                    break
        log.warning("valkey_rag_cache: %s was not a set; rebuilt it with %d groups", s.groups, len(found))
        yield Eval(script("rebuild_groups"), [s.groups], list(found))
        return found

    def _invalidate(self, suffixes: list[str], label: str) -> Flow:
        """Invalidate tokens in every group: one pipeline on a standalone server, one per shard in a cluster.

        Large batches go as several scripts (of `INVALIDATE_BATCH` tokens) so no single script blocks the
        server for long, in the same pipeline. Each group is invalidated on its own: one holding damaged data
        is retired as a whole instead, and one that can be neither is named in an `InvalidationError` once
        every other group was invalidated.
        """
        batches = [suffixes[i : i + INVALIDATE_BATCH] for i in range(0, len(suffixes), INVALIDATE_BATCH)]
        if not self._no_index:
            everywhere, s = script("invalidate_everywhere"), self.schema
            calls: list[Eval | Cmd] = [
                Eval(everywhere, [s.groups], [_fresh_era(), self.token_ttl, label, s.prefix, *b])
                for b in batches
            ]
        else:
            bases = yield from self._groups()
            calls = [self._invalidate_call(base, b, label) for base in bases for b in batches]
        replies = yield FanOut(calls)
        return self._invalidated(replies)

    def _invalidated(self, replies: list[Any]) -> int:
        deleted, failed = 0, set[str]()
        for reply in replies:
            deleted += int(reply[0])
            failed.update(_text(base) for base in reply[1:])
        if failed:
            groups = sorted(self.schema.group_of_base(b) or b for b in failed)
            raise InvalidationError(
                f"namespace trees {groups} could be neither invalidated nor retired (every other tree was "
                "invalidated); their cached answers may still be served"
            )
        return deleted

    def _invalidate_call(self, base: str, suffixes: list[str], label: str) -> Eval:
        return Eval(
            script("invalidate"), [base + "clock"], [base, _fresh_era(), self.token_ttl, label, *suffixes]
        )

    def invalidate_sources(self, ids: Iterable[str]) -> Flow:
        if isinstance(ids, str):  # one id, not its characters
            ids = [ids]
        suffixes = [self.schema.source_suffix(_check_id(i)) for i in dict.fromkeys(ids)]
        if not suffixes:
            return 0
        # Label "": the scripts count the invalidation in each namespace it retired answers in.
        return (yield from self._invalidate(suffixes, ""))

    def invalidate_namespace(self, namespace: str) -> Flow:
        validate_namespace(namespace)
        base = self.schema.group_base(namespace.split(":", 1)[0])
        reply = yield self._invalidate_call(base, ["n:" + escape(namespace)], namespace)
        self._invalidated([reply])

    def invalidate_all(self) -> Flow:
        # Label "*": the scripts count the version bump in every namespace that has counters.
        yield from self._invalidate(["a"], "*")

    def register(self, group: str) -> Flow:
        """List a tree in the index of groups, so global invalidations reach it (for trees used confined).

        A tree listed anew is retired: an invalidation may have skipped it while it was not listed.
        """
        s = self.schema
        added = yield from self._add_group(s.group_base(group))
        if added:
            yield Eval(
                script("register"), [s.clock(group)], [s.token_base(group), _fresh_era(), self.token_ttl, "1"]
            )
        return added

    def dependents(self, source_id: str) -> Flow:
        dig = source_digest(_check_id(source_id))
        bases = yield from self._groups()
        calls: list[Eval | Cmd] = [
            Eval(script("dependents"), [b + "nss"], [b + "d:", b, b + "t:", dig]) for b in bases
        ]
        results = yield FanOut(calls)
        return sorted(_text(k) for keys in results for k in keys)

    # -- housekeeping ----------------------------------------------------------------------------------

    def purge(self, count: int = 1000) -> Flow:
        """SCAN every primary under the prefix; drop entries that can no longer be served and dead links."""
        s = self.schema
        removed = 0
        targets = yield from scan_targets(self)
        for pattern, node, anchor in targets:
            cursor: Any = 0
            while True:
                cursor, keys = yield NodeCmd(
                    ("SCAN", cursor, "MATCH", pattern, "COUNT", count), node=node, key=anchor
                )
                calls: list[Eval | Cmd] = []
                for raw in keys:
                    key = _text(raw)
                    parts = s.parse_group_key(key)
                    if parts is None:
                        continue
                    base, rest = parts
                    if rest.startswith("e:"):
                        calls.append(Eval(script("sweep"), [key], ["e", base + "t:", ""]))
                    elif rest.startswith("d:") and len(rest) > 19:
                        # d:<16-char source digest>:<escaped namespace>
                        calls.append(Eval(script("sweep"), [key], ["d", "", base + "e:" + rest[19:] + ":"]))
                if calls:
                    results = yield FanOut(calls)
                    removed += sum(int(r) for r in results)
                if int(cursor) == 0:
                    break
        return removed

    def clear(self, namespace: str, count: int = 1000) -> Flow:
        """Invalidate a namespace at once, then delete its entries (and its sub-namespaces')."""
        yield from self.invalidate_namespace(namespace)
        s = self.schema
        pattern = glob_escape(s.entry_base(namespace)) + "*"
        anchor = s.clock(namespace.split(":", 1)[0])
        cursor: Any = 0
        removed = 0
        while True:
            cursor, keys = yield NodeCmd(("SCAN", cursor, "MATCH", pattern, "COUNT", count), key=anchor)
            if keys:
                removed += yield Cmd(("UNLINK", *keys))
            if int(cursor) == 0:
                return removed

    def stats(self) -> Flow:
        """Counters per namespace.

        What no writer of ours made (a stats key that is not a hash, a field that is not UTF-8 or names no
        namespace, a count that is not an integer) is skipped and counted, under the namespace ``""`` (which
        no cache can have); the scripts reset such counters as they count.
        """
        bases = yield from self._groups()
        calls: list[Eval | Cmd] = [Cmd(("HGETALL", b + "stats")) for b in bases]
        try:
            results = yield FanOut(calls)
        except Exception as exc:
            if not _data_error(exc):
                raise
            results = []
            for call in calls:  # one at a time, to skip the hashes that are not
                try:
                    results.append((yield call))
                except Exception as one:
                    if not _data_error(one):
                        raise
                    results.append(None)
        per_ns: dict[str, dict[str, int]] = {}
        unreadable = 0
        for fields in results:
            if not isinstance(fields, dict):
                unreadable += 1
                continue
            for k, v in fields.items():
                text, count = _utf8(k), _integer(v)
                name, _, ns = (text or "").partition(":")
                if count is None or not name or not ns:
                    unreadable += 1
                    continue
                per_ns.setdefault(ns, {}).setdefault(name, 0)
                per_ns[ns][name] += count
        if unreadable:
            per_ns.setdefault("", {})["unreadable"] = unreadable
        return per_ns

    def info(self) -> Flow:
        nodes = yield Primaries()
        out = []
        for node in nodes:
            out.append((yield NodeCmd(("INFO", "memory"), node=node)))
        return out


def _utf8(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    try:
        return bytes(value).decode()
    except (UnicodeDecodeError, TypeError):
        return None


def _integer(value: Any) -> int | None:
    text = _utf8(value)
    if text is None or not text.lstrip("-").isdigit() or not text.isascii() or len(text) > 20:
        return None
    return int(text)


def _wrong_type(exc: BaseException) -> bool:
    return str(exc).startswith("WRONGTYPE")


def _data_error(exc: BaseException) -> bool:
    """An error about the data of a key (wrong type, a counter that is not one), not about the backend."""
    text = str(exc)
    return text.startswith("WRONGTYPE") or ("not an integer" in text) or ("overflow" in text)


def _check_id(source_id: str) -> str:
    if not isinstance(source_id, str):
        raise TypeError(f"a source id is a string, got {type(source_id).__name__}")
    if not source_id:
        raise ValueError("a source id must not be empty")
    return source_id


def _narrowest(policy: TTLPolicy, types: list[str | None]) -> str | None:
    typed = [t for t in types if t is not None]
    return min(typed, key=policy.ttl_of) if typed else policy.default_content_type


def _index_key(rest: str) -> bool:
    # The small per-group keys that live without a TTL on purpose: clock, counters, namespaces, and the
    # version and namespace tokens (one per group and namespace).
    return rest in ("clock", "stats", "nss", "t:a") or rest.startswith("t:n:")


def scan_targets(ctx: Context) -> Flow:
    """What to SCAN, as (pattern, node, anchor key).

    Every primary under the prefix, or a confined cache's tree on the primary that owns its slot.
    """
    if ctx.confined_to is not None:
        base = ctx.schema.group_base(ctx.confined_to)
        return [(glob_escape(base) + "*", None, base + "clock")]
    nodes = yield Primaries()
    return [(ctx.schema.scan_pattern(), node, None) for node in nodes]


def untimed_keys(ctx: Context, sample: int = 2000) -> Flow:
    """Count keys under the prefix, other than the small index keys, that have no TTL (a sample)."""
    s = ctx.schema
    targets = yield from scan_targets(ctx)
    found = 0
    for pattern, node, anchor in targets:
        cursor: Any = 0
        seen = 0
        while True:
            cursor, keys = yield NodeCmd(
                ("SCAN", cursor, "MATCH", pattern, "COUNT", 500), node=node, key=anchor
            )
            names = [_text(k) for k in keys]
            names = [
                k for k in names if k != s.groups and not _index_key((s.parse_group_key(k) or ("", ""))[1])
            ]
            if names:
                ttls = yield FanOut([Cmd(("TTL", k)) for k in names])
                found += sum(1 for t in ttls if int(t) == -1)
            seen += len(names)
            if int(cursor) == 0 or seen >= sample:
                break
    return found
