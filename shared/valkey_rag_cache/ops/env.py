"""What every operation reads: key schema, TTL policy, cluster or not, confinement, counters, clock, eras.

An `Env` is frozen: `AnswerCache` builds one once it knows whether it is connected to a cluster, and keeps
it while that stays true, so reading it never changes it.

Example:
    >>> from valkey_rag_cache import TTLPolicy
    >>> from valkey_rag_cache.keys import KeySchema
    >>> env = Env(KeySchema("p"), TTLPolicy({}, "documentation"), cluster=True)
    >>> env.no_index, env.token_ttl == env.policy.max_ttl
    (True, True)
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from ..keys import KeySchema
from ..ttl import TTLPolicy

__all__ = ["Env", "fresh_era"]


@dataclass(frozen=True)
class Env:
    """Everything the operations need to know about the cache they run for."""

    schema: KeySchema
    policy: TTLPolicy
    cluster: bool = False
    count_stats: bool = True
    # A confined cache keeps to one namespace tree (this top-level namespace): it never touches the index of
    # groups, and its invalidations, dependents, stats and purge cover its tree only (see `AnswerCache`).
    confined_to: str | None = None
    clock: Callable[[], float] = time.time
    # Per-namespace constants of the hit path, built once (a memo, not state: nothing reads it but lookup).
    memo: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    @cached_property
    def token_ttl(self) -> int:
        # Tokens must outlive the entries that recorded them; writes lengthen them further when needed.
        return self.policy.max_ttl

    @cached_property
    def no_index(self) -> bool:
        # The scripts take the index of groups as a key only on an unconfined standalone server.
        return self.cluster or self.confined_to is not None


_ERA_PREFIX = os.urandom(6).hex()
_ERA_COUNT = itertools.count(1)


def _reseed_era() -> None:
    global _ERA_PREFIX
    _ERA_PREFIX = os.urandom(6).hex()


os.register_at_fork(after_in_child=_reseed_era)  # a forked worker must not repeat its parent's eras


def fresh_era() -> str:
    """A new era for a clock (re)created now: unique per call, so tokens never repeat after an eviction.

    48 random bits per process, then a counter: no system call on every lookup.
    """
    return f"{_ERA_PREFIX}{next(_ERA_COUNT):x}"
