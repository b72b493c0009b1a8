"""Helpers of the pure operation tests: an `Env` without a server, and a driver by hand.

A reply here is what a driver would hand back; no server and no client.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any, TypeVar

from valkey_rag_cache import TTLPolicy
from valkey_rag_cache.envelope import encode_body
from valkey_rag_cache.keys import KeySchema
from valkey_rag_cache.ops.env import Env
from valkey_rag_cache.ops.requests import Flow

T = TypeVar("T")
SCHEMA = KeySchema("p")


def env(cluster: bool = False, **changes: Any) -> Env:
    base = Env(SCHEMA, TTLPolicy({}, "documentation"), cluster=cluster, clock=lambda: 1000.0)
    return replace(base, **changes) if changes else base


def run(flow: Flow[T], replies: list[Any]) -> tuple[list[Any], T]:
    """Drive `flow`: send `replies` one per yielded op; return the ops and the flow's result."""
    ops: list[Any] = []
    pending: Iterator[Any] = iter(replies)
    try:
        op = next(flow)
        while True:
            ops.append(op)
            reply = next(pending, _NONE)
            assert reply is not _NONE, f"the flow asked for more than the replies given: {op}"
            op = flow.send(reply)
    except StopIteration as done:
        assert next(pending, _NONE) is _NONE, "the flow ended before using every reply"
        return ops, done.value


_NONE = object()


def stored(value: Any = "answer", sources: tuple[str, ...] = ("a.md",)) -> bytes:
    # An entry as Valkey holds it: the scripts' header, a blank line, then the JSON body.
    return b"tokens-header\n\n" + encode_body(value, sources, "documentation", 1.0)
