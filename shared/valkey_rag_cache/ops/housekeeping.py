"""Housekeeping: dependents, purge, clear, counters, and what `doctor()` reads (memory, keys without a TTL).

Example:
    >>> from valkey_rag_cache import TTLPolicy
    >>> from valkey_rag_cache.keys import KeySchema
    >>> from valkey_rag_cache.ops.env import Env
    >>> env = Env(KeySchema("p"), TTLPolicy({}, "documentation"))
    >>> next(info(env))
    Primaries()
"""

from __future__ import annotations

from typing import Any

from valkey.exceptions import ValkeyError

from ..doctor import DoctorReport, diagnose
from ..health import is_backend_error
from ..keys import glob_escape, group_keys, source_digest
from ..scripts import script
from .env import Env
from .groups import group_bases
from .invalidate import check_id, invalidate_namespace
from .requests import Call, Cmd, Eval, FanOut, Flow, NodeCmd, Primaries, data_error, integer, text, utf8

__all__ = ["clear", "dependents", "doctor", "info", "purge", "scan_targets", "stats", "untimed_keys"]

Counters = dict[str, dict[str, int]]


def dependents(env: Env, source_id: str) -> Flow[list[str]]:
    """Keys of the live entries built on `source_id`, in every tree (sorted)."""
    dig = source_digest(check_id(source_id))
    bases = yield from group_bases(env)
    calls: list[Call] = [Eval(script("dependents"), [group_keys(b).nss], [b, dig]) for b in bases]
    results = yield FanOut(calls)
    return sorted(text(k) for keys in results for k in keys)


def purge(env: Env, count: int = 1000) -> Flow[int]:
    """SCAN every primary under the prefix; drop entries that can no longer be served and dead links."""
    s = env.schema
    removed = 0
    targets = yield from scan_targets(env)
    for pattern, node, anchor in targets:
        cursor: Any = 0
        while True:
            cursor, keys = yield NodeCmd(
                ("SCAN", cursor, "MATCH", pattern, "COUNT", count), node=node, key=anchor
            )
            calls: list[Call] = []
            for raw in keys:
                key = text(raw)
                parts = s.parse_group_key(key)
                if parts is None:
                    continue
                tree = group_keys(parts[0])
                if parts[1].startswith("e:"):
                    calls.append(Eval(script("sweep"), [key], ["e", tree.tokens, ""]))
                elif (entries := tree.entries_of_deps(parts[1])) is not None:
                    calls.append(Eval(script("sweep"), [key], ["d", "", entries]))
            if calls:
                results = yield FanOut(calls)
                removed += sum(int(r) for r in results)
            if int(cursor) == 0:
                break
    return removed


def clear(env: Env, namespace: str, count: int = 1000) -> Flow[int]:
    """Invalidate a namespace at once, then delete its entries (and its sub-namespaces')."""
    yield from invalidate_namespace(env, namespace)
    s = env.schema
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


def stats(env: Env) -> Flow[Counters]:
    """Counters per namespace.

    What no writer of ours made (a stats key that is not a hash, a field that is not UTF-8 or names no
    namespace, a count that is not an integer) is skipped and counted, under the namespace ``""`` (which no
    cache can have); the scripts reset such counters as they count.
    """
    bases = yield from group_bases(env)
    calls: list[Call] = [Cmd(("HGETALL", group_keys(b).stats)) for b in bases]
    try:
        results = yield FanOut(calls)
    except Exception as exc:
        if not data_error(exc):
            raise
        results = []
        for call in calls:  # one at a time, to skip the hashes that are not
            try:
                results.append((yield call))
            except Exception as one:
                if not data_error(one):
                    raise
                results.append(None)
    per_ns: Counters = {}
    unreadable = 0
    for fields in results:
        if not isinstance(fields, dict):
            unreadable += 1
            continue
        for k, v in fields.items():
            name_ns, n = utf8(k), integer(v)
            name, _, ns = (name_ns or "").partition(":")
            if n is None or not name or not ns:
                unreadable += 1
                continue
            per_ns.setdefault(ns, {}).setdefault(name, 0)
            per_ns[ns][name] += n
    if unreadable:
        per_ns.setdefault("", {})["unreadable"] = unreadable
    return per_ns


def info(env: Env) -> Flow[list[Any]]:
    """``INFO memory`` of every primary."""
    nodes = yield Primaries()
    out = []
    for node in nodes:
        out.append((yield NodeCmd(("INFO", "memory"), node=node)))
    return out


def doctor(env: Env) -> Flow[DoctorReport]:
    """Read memory settings (where allowed) and sample keys without a TTL; name what breaks the cache."""
    try:
        infos = yield from info(env)
    except Exception as exc:  # INFO refused by an ACL: the report says what it could not read
        if not (is_backend_error(exc) or isinstance(exc, ValkeyError)):
            raise
        infos = [exc]
    untimed = yield from untimed_keys(env)
    return diagnose(infos, env.cluster, untimed)


def scan_targets(env: Env) -> Flow[list[tuple[str, Any, str | None]]]:
    """What to SCAN, as (pattern, node, anchor key).

    Every primary under the prefix, or a confined cache's tree on the primary that owns its slot.
    """
    if env.confined_to is not None:
        tree = env.schema.group(env.confined_to)
        return [(glob_escape(tree.base) + "*", None, tree.clock)]
    nodes = yield Primaries()
    return [(env.schema.scan_pattern(), node, None) for node in nodes]


def _index_key(rest: str) -> bool:
    # The small per-group keys that live without a TTL on purpose: clock, counters, namespaces, and the
    # version and namespace tokens (one per group and namespace).
    return rest in ("clock", "stats", "nss", "t:a") or rest.startswith("t:n:")


def untimed_keys(env: Env, sample: int = 2000) -> Flow[int]:
    """Count keys under the prefix, other than the small index keys, that have no TTL (a sample)."""
    s = env.schema
    targets = yield from scan_targets(env)
    found = 0
    for pattern, node, anchor in targets:
        cursor: Any = 0
        seen = 0
        while True:
            cursor, keys = yield NodeCmd(
                ("SCAN", cursor, "MATCH", pattern, "COUNT", 500), node=node, key=anchor
            )
            names = [text(k) for k in keys]
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
