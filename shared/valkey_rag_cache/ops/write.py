"""Write: one `write.lua` call that stores an entry with its dependencies, checked against its lookup's view.

Example:
    >>> from valkey_rag_cache import TTLPolicy
    >>> from valkey_rag_cache.keys import KeySchema
    >>> from valkey_rag_cache.ops.env import Env
    >>> env = Env(KeySchema("p"), TTLPolicy({}, "documentation"))
    >>> flow = write(env, KeySchema("p").entry_key("qa", "hi", "docs"), "an answer", (), None)
    >>> next(flow).script.name
    'write'
"""

from __future__ import annotations

import itertools
import logging
from typing import Any, NamedTuple

from ..envelope import encode_body
from ..keys import EntryKey, escape, source_digest
from ..scripts import script
from ..seen import Seen
from ..sources import Source
from ..telemetry import value_kind, warn_once
from ..ttl import TTLPolicy, TTLValue
from .env import Env, fresh_era
from .groups import add_group, retire_call
from .requests import Eval, Flow

__all__ = ["HOUSEKEEPING_EVERY", "WriteArgs", "write", "write_call"]

log = logging.getLogger("valkey_rag_cache")

# One write in this many also lengthens source tokens' TTLs and prunes dead dependency-set members: the
# rest skip that upkeep (neither is needed for correctness; `purge()` does the rest).
HOUSEKEEPING_EVERY = 8
_WRITES = itertools.count()


class WriteArgs(NamedTuple):
    """write.lua's packed argument (the names in its first line: the same fields, in this order, then the
    source digests). Every field is made of key-safe characters, so one space-joined string carries them.
    (A named tuple: made on every write, in a fraction of a frozen dataclass's time.)"""

    base: str  # the group's base
    namespace: str  # escaped
    ttl: int
    seen_era: str  # '-': no lookup before this write, stored unchecked
    seen_counter: int
    seen_invalidations: int
    fresh_era: str
    digest: str
    token_ttl: int
    count_stats: str  # '1' or '0'
    housekeeping: str  # '1' or '0'
    sources: tuple[str, ...] = ()  # source digests: the words after the named fields

    def pack(self) -> str:
        return " ".join([*map(str, self[:-1]), *self.sources])


def write(
    env: Env,
    key: EntryKey,
    value: Any,
    sources: tuple[Source, ...],
    seen: Seen | None,
    ttl: TTLValue | None = None,
    content_type: str | None = None,
) -> Flow[bool | None]:
    """Store `value`; False when refused (an invalidation overtook `seen`), None when not JSON (never sent).

    `seen` is what the lookup before this write saw (None: no lookup, stored unchecked).
    """
    call = write_call(env, key, value, sources, seen, ttl, content_type)
    if not isinstance(call, Eval):
        return call
    if seen is None and env.cluster and env.confined_to is None:
        # A write without a lookup still has to make its group known to invalidations first; a group the
        # index had lost may have been skipped by one, so it is retired (standalone: inside the script).
        added = yield from add_group(env, key.group)
        if added:
            yield retire_call(env, key.group, force=True)
    return bool((yield call))


def write_call(
    env: Env,
    key: EntryKey,
    value: Any,
    sources: tuple[Source, ...],
    seen: Seen | None,
    ttl: TTLValue | None = None,
    content_type: str | None = None,
) -> Eval | bool | None:
    """`write`'s script call; or False (refused before sending) or None (not JSON), as `write` returns.

    The whole write on a standalone server, where the cache sends it without a flow (the hot path).
    """
    if seen is not None and not seen.reached:
        # Its lookup did not reach Valkey: an invalidation may have returned since the answer was computed,
        # and no clock says whether one did. Refused, never stored unchecked.
        return False
    types: list[str | None] = (
        [content_type] if content_type is not None else [src.content_type for src in sources]
    )
    seconds = env.policy.ttl_for(types, ttl)
    resolved_type = content_type or _narrowest(env.policy, types)
    try:
        body = encode_body(value, tuple(src.id for src in sources), resolved_type, env.clock())
    except (TypeError, ValueError) as exc:  # not JSON (or NaN): the caller's answer is returned uncached
        warn_once(
            log,
            "uncachable:" + value_kind(exc),
            "valkey_rag_cache: not caching a value JSON cannot hold: %s",
            exc,
        )
        return None  # falsy like a refusal; None tells observers it was never sent
    c = _consts(env, key.namespace)
    packed = WriteArgs(
        c.base,
        c.namespace,
        seconds,
        seen.era if seen else "-",
        seen.counter if seen else 0,
        seen.invalidations if seen else 0,
        fresh_era(),
        key.digest,
        env.token_ttl,
        c.count_stats,
        "1" if next(_WRITES) % HOUSEKEEPING_EVERY == 0 else "0",
        tuple(source_digest(src.id) for src in sources),
    ).pack()
    return Eval(script("write"), [c.entry_base + key.digest, *c.keys], [packed, key.namespace, body])


class _Consts(NamedTuple):
    """A namespace's part of every write: its tree's base, the escaped namespace, the fixed keys."""

    base: str
    namespace: str  # escaped
    entry_base: str
    keys: list[str]  # the tree's clock, stats and namespaces set, then the index of groups (standalone)
    count_stats: str


def _consts(env: Env, namespace: str) -> _Consts:
    # Built once per namespace (escaping and naming cost a few µs a write), kept in the env's memo.
    memo_key = ("write", namespace)
    found: _Consts | None = env.memo.get(memo_key)
    if found is None:
        s, tree = env.schema, env.schema.tree(namespace)
        keys = [tree.clock, tree.stats, tree.nss] + ([] if env.no_index else [s.groups])
        found = _Consts(
            tree.base, escape(namespace), tree.entry_base(namespace), keys, "1" if env.count_stats else "0"
        )
        if len(env.memo) > 1024:
            env.memo.clear()
        env.memo[memo_key] = found
    return found


def _narrowest(policy: TTLPolicy, types: list[str | None]) -> str | None:
    typed = [t for t in types if t is not None]
    return min(typed, key=policy.ttl_of) if typed else policy.default_content_type
