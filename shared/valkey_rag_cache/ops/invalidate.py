"""Invalidation by source, namespace and version: per tree, independently (one damaged tree stops no other).

Example:
    >>> from valkey_rag_cache import TTLPolicy
    >>> from valkey_rag_cache.keys import KeySchema
    >>> from valkey_rag_cache.ops.env import Env
    >>> env = Env(KeySchema("p"), TTLPolicy({}, "documentation"))
    >>> next(invalidate_namespace(env, "docs:technical")).keys
    ['p:{docs}:clock', 'p:{docs}:stats', 'p:{docs}:nss']
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..errors import InvalidationError
from ..keys import VERSION, group_keys, namespace_suffix, validate_namespace
from ..scripts import script
from .env import Env, fresh_era
from .groups import group_bases
from .requests import Call, Eval, FanOut, Flow, text

__all__ = ["INVALIDATE_BATCH", "check_id", "invalidate_all", "invalidate_namespace", "invalidate_sources"]

# Source tokens invalidated by one script call.
INVALIDATE_BATCH = 500


def invalidate_sources(env: Env, ids: Iterable[str]) -> Flow[int]:
    """Invalidate and delete every answer built on any of `ids` (a str is one id); returns how many."""
    if isinstance(ids, str):  # one id, not its characters
        ids = [ids]
    suffixes = [env.schema.source_suffix(check_id(i)) for i in dict.fromkeys(ids)]
    if not suffixes:
        return 0
    # Label "": the scripts count the invalidation in each namespace it retired answers in.
    return (yield from _invalidate(env, suffixes, ""))


def invalidate_namespace(env: Env, namespace: str) -> Flow[None]:
    """Invalidate a namespace and every namespace below it: one script on its tree."""
    validate_namespace(namespace)
    base = env.schema.tree(namespace).base
    reply = yield tree_call(env, base, [namespace_suffix(namespace)], namespace)
    deleted([reply], env)


def invalidate_all(env: Env) -> Flow[None]:
    """Bump the version token of every tree."""
    # Label "*": the scripts count the version bump in every namespace that has counters.
    yield from _invalidate(env, [VERSION], "*")


def _invalidate(env: Env, suffixes: list[str], label: str) -> Flow[int]:
    """Invalidate tokens in every group: one pipeline on a standalone server, one per shard in a cluster.

    Large batches go as several scripts (of `INVALIDATE_BATCH` tokens) so no single script blocks the server
    for long, in the same pipeline. Each group is invalidated on its own: one holding damaged data is retired
    as a whole instead, and one that can be neither is named in an `InvalidationError` once every other
    group was invalidated.
    """
    batches = [suffixes[i : i + INVALIDATE_BATCH] for i in range(0, len(suffixes), INVALIDATE_BATCH)]
    if not env.no_index:
        everywhere, s = script("invalidate_everywhere"), env.schema
        calls: list[Call] = [
            Eval(everywhere, [s.groups], [fresh_era(), env.token_ttl, label, s.prefix, *b]) for b in batches
        ]
    else:
        bases = yield from group_bases(env)
        calls = [tree_call(env, base, b, label) for base in bases for b in batches]
    replies = yield FanOut(calls)
    return deleted(replies, env)


def tree_call(env: Env, base: str, suffixes: list[str], label: str) -> Eval:
    """`invalidate.lua` on one tree (its clock routes it)."""
    tree = group_keys(base)
    keys: list[str | bytes] = [tree.clock, tree.stats, tree.nss]
    return Eval(script("invalidate"), keys, [base, fresh_era(), env.token_ttl, label, *suffixes])


def deleted(replies: list[Any], env: Env) -> int:
    """The entries the scripts deleted; `InvalidationError` naming the trees that were not invalidated."""
    count, failed = 0, set[str]()
    for reply in replies:
        count += int(reply[0])
        failed.update(text(base) for base in reply[1:])
    if failed:
        groups = sorted(env.schema.group_of_base(b) or b for b in failed)
        raise InvalidationError(
            f"namespace trees {groups} could be neither invalidated nor retired (every other tree was "
            "invalidated); their cached answers may still be served"
        )
    return count


def check_id(source_id: str) -> str:
    """A source id is a non-empty string: checked before anything is sent."""
    if not isinstance(source_id, str):
        raise TypeError(f"a source id is a string, got {type(source_id).__name__}")
    if not source_id:
        raise ValueError("a source id must not be empty")
    return source_id
