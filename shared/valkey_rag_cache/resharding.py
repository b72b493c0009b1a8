"""Cluster resharding: which replies mean "a hash slot is moving or moved", and retrying them for a while.

A slot that moved answers MOVED; one being migrated answers ASK or TRYAGAIN, and a script whose keys are split
between the two nodes fails ("non local key", "undeclared keys ... during rehashing of the slot"). All of it
lasts until the migration ends, so a call is retried (through the cluster client, which follows redirects
and refreshes its slot map) until the cache's timeout, then fails as an unavailable backend: a miss for a
lookup, `InvalidationError` for an invalidation.

Example:
    >>> from valkey.exceptions import ResponseError
    >>> is_resharding(ResponseError("Script attempted to access a non local key in a cluster node script: x"))
    True
    >>> is_resharding(ResponseError("ERR Error running script: user_script:1: bad argument"))
    False
"""

from __future__ import annotations

from valkey.exceptions import AskError, ClusterError, ResponseError, TryAgainError

from .errors import CacheError

__all__ = ["RETRY_PAUSE", "ReshardingError", "is_resharding"]

# Between two attempts: a slot's keys usually finish moving within milliseconds.
RETRY_PAUSE = 0.02

_PREFIXES = ("MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN")
_SCRIPT_MARKS = ("non local key", "during rehashing of the slot")


class ReshardingError(CacheError):
    """A hash slot was still moving between shards when the cache's timeout ran out."""


def is_resharding(exc: BaseException) -> bool:
    """A reply that says a slot is moving or has moved (valkey-py's classes drop the MOVED/ASK prefix)."""
    if isinstance(exc, AskError | TryAgainError | ClusterError):  # MovedError is an AskError
        return True
    if isinstance(exc, ResponseError):
        text = str(exc)
        return text.startswith(_PREFIXES) or any(mark in text for mark in _SCRIPT_MARKS)
    return False


def gave_up(exc: BaseException, seconds: float) -> ReshardingError:
    """The error to raise when a slot did not settle in time (TRYAGAIN's own message is empty)."""
    return ReshardingError(
        f"a cluster hash slot is being moved and did not settle within {seconds:g}s "
        f"({type(exc).__name__}: {exc})"
    )
