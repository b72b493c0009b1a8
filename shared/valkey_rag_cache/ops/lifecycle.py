"""Namespace lifecycle: drop a namespace tree, reclaim the bookkeeping of trees idle for long, reset counters.

Sans-IO flows over an `Env`, like every operation in `ops`.

Dropping is safe against stale hits and racing writers because it *invalidates first*: the tree's namespace
token is replaced (and the group's invalidation count bumped) before anything is deleted, so every entry
written before the drop is stale from that moment, and a write whose lookup preceded the drop is refused by
the write script (an invalidation happened since its lookup). Deleting the tokens, counters and clock
afterwards keeps that true: a write that finds its namespace token or its clock gone, after an
invalidation, is refused too; a clock created anew has a fresh era, which refuses every older view.

Example:
    >>> cache.drop_namespace("tenant-42")  # doctest: +SKIP
    17
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from valkey.exceptions import ResponseError

from ..errors import InvalidationError
from ..keys import escape, glob_escape, validate_namespace
from ..scripts import script
from . import housekeeping
from .env import Env
from .env import fresh_era as _fresh_era
from .groups import group_bases
from .invalidate import tree_call
from .requests import Call, Cmd, Eval, FanOut, Flow, NodeCmd, Primaries
from .requests import text as _text

__all__ = ["DEFAULT_IDLE_AFTER", "drop_namespace", "purge", "reset_stats"]

# A top-level namespace tree that held no entry and saw no lookup, write or invalidation for this long
# (seconds; between two purges at least this far apart) loses its bookkeeping: clock, counters, tokens.
DEFAULT_IDLE_AFTER = 7 * 24 * 3600.0

_IDLE_FIELD = "idle"  # in the group's clock hash: "<unix time> <activity>", set by purge()


def _group_of(namespace: str) -> str:
    return namespace.split(":", 1)[0]


def _scan_group(ctx: Env, base: str, count: int) -> Flow[Any]:
    """Every key of one group (all in one slot, so on one primary), page by page: yields op, returns keys."""
    anchor = base + "clock"
    pattern = glob_escape(base) + "*"
    cursor: Any = 0
    names: list[str] = []
    while True:
        cursor, keys = yield NodeCmd(("SCAN", cursor, "MATCH", pattern, "COUNT", count), key=anchor)
        names += [_text(k) for k in keys]
        if int(cursor) == 0:
            return sorted(set(names))


def _unlink(keys: list[str]) -> Flow[Any]:
    removed = 0
    for i in range(0, len(keys), 500):
        removed += int((yield Cmd(("UNLINK", *keys[i : i + 500]))))
    return removed


def _in_tree(rest: str, esc: str) -> bool:
    """Whether a group key (the part after the group base) belongs to the namespace tree `esc` (escaped)."""
    if rest.startswith("e:"):
        return rest.startswith("e:" + esc + ":")
    if rest.startswith("t:n:"):
        return rest == "t:n:" + esc or rest.startswith("t:n:" + esc + ":")
    if rest.startswith("d:") and len(rest) > 19:  # d:<16-char source digest>:<escaped namespace>
        ns = rest[19:]
        return ns == esc or ns.startswith(esc + ":")
    return False


def _retire(ctx: Env, base: str, esc: str, label: str) -> Flow[Any]:
    # First the invalidation: from here on nothing written before is served, and racing writes are refused.
    reply = yield tree_call(ctx, base, ["n:" + esc], label)
    if isinstance(reply, list | tuple) and len(reply) > 1 and reply[1]:
        # Neither invalidated nor retired: deleting now could leave answers a racing write would revive.
        raise InvalidationError(
            f"could not invalidate the namespace tree under {_text(reply[1])!r}; nothing was dropped"
        )


def drop_namespace(ctx: Env, namespace: str, count: int = 1000) -> Flow[Any]:
    """Remove a namespace tree: its entries, tokens, dependency sets and counters (for a top-level
    namespace also its clock and its place in the index of groups). Returns the number of keys deleted."""
    validate_namespace(namespace)
    s = ctx.schema
    group = _group_of(namespace)
    base = s.group_base(group)
    yield from _retire(ctx, base, escape(namespace), namespace)
    if namespace == group:
        return (yield from _drop_group(ctx, base, count))
    esc = escape(namespace)
    keys = yield from _scan_group(ctx, base, count)
    removed = yield from _unlink([k for k in keys if _in_tree(k[len(base) :], esc)])
    # The tree's members of the group's namespaces set, and its counters (stats fields hold raw names).
    members, fields = yield FanOut([Cmd(("SMEMBERS", base + "nss")), Cmd(("HKEYS", base + "stats"))])
    gone = [m for m in (_text(x) for x in members) if m == esc or m.startswith(esc + ":")]
    stale_fields = [f for f in (_text(x) for x in fields) if _field_in_tree(f, namespace)]
    calls: list[Call] = []
    if gone:
        calls.append(Cmd(("SREM", base + "nss", *gone)))
    if stale_fields:
        calls.append(Cmd(("HDEL", base + "stats", *stale_fields)))
    if calls:
        yield FanOut(calls)
    return removed


def _field_in_tree(field: str, namespace: str) -> bool:
    ns = field.partition(":")[2]
    return ns == namespace or ns.startswith(namespace + ":")


def _drop_group(ctx: Env, base: str, count: int) -> Flow[Any]:
    s = ctx.schema
    clock = base + "clock"
    keys = yield from _scan_group(ctx, base, count)
    removed = yield from _unlink([k for k in keys if k != clock])  # the clock goes last
    if ctx.confined_to is not None:
        # A confined cache never touches the index of groups (an operator may have listed the tree there:
        # an entry for a tree without a clock only costs invalidations a visit).
        removed += int((yield Cmd(("UNLINK", clock))))
        return removed
    if not ctx.cluster:
        removed += int((yield Eval(script("drop"), [clock, s.groups], [base])))
        return removed
    # Cluster: the index of groups lives in another slot. Delete the clock, forget the group, then look
    # again: a lookup that recreated the clock in between registered the group first (SADD), and a group
    # found with a clock but out of the index is registered again and retired, like a write would.
    removed += int((yield Cmd(("UNLINK", clock))))
    yield Cmd(("SREM", s.groups, base))
    if int((yield Cmd(("EXISTS", clock)))) and int((yield Cmd(("SADD", s.groups, base)))):
        yield Eval(script("register"), [clock], [base + "t:", _fresh_era(), ctx.token_ttl, "1"])
    return removed


def reset_stats(ctx: Env, namespace: str | None = None) -> Flow[Any]:
    """Zero the shared counters of one namespace tree (``None``: of every namespace under the prefix)."""
    s = ctx.schema
    if namespace is None:
        bases = yield from group_bases(ctx)
        if bases:
            yield FanOut([Cmd(("UNLINK", b + "stats")) for b in bases])
        return None
    validate_namespace(namespace)
    stats = s.stats(_group_of(namespace))
    if namespace == _group_of(namespace):
        yield Cmd(("UNLINK", stats))
        return None
    fields = [f for f in (_text(x) for x in (yield Cmd(("HKEYS", stats)))) if _field_in_tree(f, namespace)]
    if fields:
        yield Cmd(("HDEL", stats, *fields))
    return None


def _watch(flow: Flow[Any], on_reply: Callable[[Any, Any], None]) -> Flow[Any]:
    """Run `flow` unchanged, showing each (op, reply) to `on_reply` (progress, keys seen)."""
    try:
        op = next(flow)
        while True:
            try:
                reply = yield op
            except Exception as exc:
                op = flow.throw(exc)
                continue
            on_reply(op, reply)
            op = flow.send(reply)
    except StopIteration as done:
        return done.value


def purge(
    ctx: Env,
    count: int = 1000,
    idle_after: float | None = DEFAULT_IDLE_AFTER,
    progress: Callable[[int], None] | None = None,
) -> Flow[Any]:
    """`housekeeping.purge` (stale entries, dead links), then drop the trees idle for `idle_after` seconds.

    A tree is idle when a purge finds no entry in it and its activity (clock and counters) has not moved
    since an earlier purge at least `idle_after` seconds ago marked it; ``None`` keeps every tree.
    `progress(n)` is called with the number of keys each SCAN page examined.
    """
    s = ctx.schema
    busy: set[str] = set()
    present: set[str] = set()
    held: dict[str, set[str]] = {}  # group base -> escaped namespaces holding entries
    tokens: dict[str, set[str]] = {}  # group base -> escaped sub-namespaces with a namespace token

    def on_reply(op: Any, reply: Any) -> None:
        if isinstance(op, NodeCmd) and op.args and op.args[0] == "SCAN":
            keys = reply[1]
            for raw in keys:
                parts = s.parse_group_key(_text(raw))
                if parts is not None:
                    base, rest = parts
                    present.add(base)
                    if rest.startswith("e:"):
                        busy.add(base)
                        held.setdefault(base, set()).add(rest[2:].rpartition(":")[0])
                    elif rest.startswith("t:n:") and ":" in rest[4:]:
                        tokens.setdefault(base, set()).add(rest[4:])
            if progress is not None:
                progress(len(keys))

    removed = int((yield from _watch(housekeeping.purge(ctx, count), on_reply)))
    if idle_after is None:
        return removed
    indexed = yield from group_bases(ctx)  # a confined cache: its own tree only
    if ctx.confined_to is not None:
        present &= set(indexed)
    for base in sorted((present | set(indexed)) - busy):
        try:
            removed += yield from _reclaim_if_idle(ctx, base, idle_after, count)
        except ResponseError:  # a clock or counters of a foreign type: left to the lookups that repair them
            continue
    for base in sorted(busy & set(tokens)):
        # A tree in use keeps its clock; its sub-namespaces that held nothing for long go (their tokens have
        # no TTL, and a namespace per user or per session would otherwise pile them up).
        idle = {ns for ns in tokens[base] if not any(h == ns or h.startswith(ns + ":") for h in held[base])}
        try:
            removed += yield from _reclaim_subtrees(ctx, base, idle, idle_after, count)
        except ResponseError:
            continue
    return removed


def _reclaim_subtrees(ctx: Env, base: str, idle: set[str], idle_after: float, count: int) -> Flow[Any]:
    clock = base + "clock"
    state, counters = yield FanOut([Cmd(("HGETALL", clock)), Cmd(("HGETALL", base + "stats"))])
    fields = {_text(k): _text(v) for k, v in state.items()}
    if "e" not in fields:
        return 0
    stats = [(escape(_text(k).partition(":")[2]), _number(v)) for k, v in counters.items()]
    now = float(ctx.clock())
    removed = 0
    marks: dict[str, str] = {}
    for ns in sorted(idle):
        activity = str(sum(n for name, n in stats if name == ns or name.startswith(ns + ":")))
        mark = fields.get(f"{_IDLE_FIELD}:{ns}")
        if mark is not None:
            marked_at, _, marked_activity = mark.partition(" ")
            if marked_activity == activity and now - float(marked_at) >= idle_after:
                removed += yield from drop_namespace(ctx, unquote(ns), count)
                yield Cmd(("HDEL", clock, f"{_IDLE_FIELD}:{ns}"))
                continue
            if marked_activity == activity:
                continue
        marks[f"{_IDLE_FIELD}:{ns}"] = f"{int(now)} {activity}"
    # Marks of namespaces that hold entries again, or whose token is gone, are forgotten.
    stale_marks = [
        f for f in fields if f.startswith(_IDLE_FIELD + ":") and f[len(_IDLE_FIELD) + 1 :] not in idle
    ]
    calls: list[Call] = []
    if marks:
        calls.append(Cmd(("HSET", clock, *[x for kv in marks.items() for x in kv])))
    if stale_marks:
        calls.append(Cmd(("HDEL", clock, *stale_marks)))
    if calls:
        yield FanOut(calls)
    return removed


def _reclaim_if_idle(ctx: Env, base: str, idle_after: float, count: int) -> Flow[Any]:
    clock = base + "clock"
    state, counters = yield FanOut(
        [Cmd(("HMGET", clock, "e", "c", "i", _IDLE_FIELD)), Cmd(("HVALS", base + "stats"))]
    )
    era, c, i, mark = (None if v is None else _text(v) for v in state)
    if era is None:  # no clock (evicted, or a leftover): nothing to wait for
        return (yield from _drop_idle(ctx, base, count))
    activity = f"{c}.{i}.{sum(_number(v) for v in counters)}"
    now = float(ctx.clock())
    if mark is not None:
        marked_at, _, marked_activity = mark.partition(" ")
        if marked_activity == activity and now - float(marked_at) >= idle_after:
            return (yield from _drop_idle(ctx, base, count))
        if marked_activity == activity:
            return 0
    # Whole seconds, rounded down: a mark never lies in the future of the next purge.
    yield Cmd(("HSET", clock, _IDLE_FIELD, f"{int(now)} {activity}"))
    return 0


def _number(value: Any) -> int:
    # A counter someone else overwrote with a word counts as 0 here (the next count repairs it).
    text = _text(value)
    return int(text) if text.isdigit() else 0


def _drop_idle(ctx: Env, base: str, count: int) -> Flow[Any]:
    esc = base[len(ctx.schema.prefix) + 2 : -2]  # prefix:{<escaped group>}:
    yield from _retire(ctx, base, esc, "")
    return (yield from _drop_group(ctx, base, count))


def key_count(ctx: Env) -> Flow[Any]:
    """How many keys the primaries hold in all (``DBSIZE``; other data sharing the database included)."""
    nodes = yield Primaries()
    total = 0
    for node in nodes:
        total += int((yield NodeCmd(("DBSIZE",), node=node)))
    return total
