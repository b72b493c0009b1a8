"""Fast fills in the cache's real format: the core's own write flows, driven many at a time over pipelines.

The core's operations are sans-IO generators (`valkey_rag_cache.ops`); here a batch of write flows is
advanced in lock step, each step's calls sent as one pipeline. The server runs exactly the scripts a normal
`store()` runs, so the keys, values and sets are what a real workload leaves behind.

Example:
    >>> fill(cache, client, (cache.key("qa", i), {"a": i}, ["doc.md"]) for i in range(1000))  # doctest: +SKIP
    1000
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

from valkey_rag_cache import AnswerCache, EntryKey, as_sources
from valkey_rag_cache.ops.requests import Cmd, Eval
from valkey_rag_cache.ops.write import write

__all__ = ["fill", "Item"]

Item = tuple[EntryKey, Any, list[str]]


def fill(cache: AnswerCache, client: Any, items: Iterable[Item], batch: int = 2000) -> int:
    """Store every (key, value, source ids) item with the core's write flow; returns how many were stored."""
    rest = iter(items)
    key, value, srcs = next(rest)
    stored = int(cache.store(key, value, srcs))  # loads the scripts and registers the group the normal way
    env = cache.env  # what the flows read: key schema and TTL policy of this cache
    for chunk in _chunks(rest, batch):
        flows = [write(env, key, value, as_sources(srcs), None) for key, value, srcs in chunk]
        ops: list[Any] = [next(f) for f in flows]
        while flows:
            pipe = client.pipeline(transaction=False)
            for op in ops:
                if isinstance(op, Eval):
                    pipe.evalsha(op.script.sha, len(op.keys), *op.keys, *op.args)
                elif isinstance(op, Cmd):
                    pipe.execute_command(*op.args)
                else:
                    raise TypeError(f"bulk fill cannot drive {op!r}")
            replies = pipe.execute()
            live, nxt = [], []
            for flow, reply in zip(flows, replies, strict=True):
                try:
                    nxt.append(flow.send(reply))
                    live.append(flow)
                except StopIteration as done:
                    stored += bool(done.value)
            flows, ops = live, nxt
    return stored


def _chunks(items: Iterator[Item], size: int) -> Iterator[list[Item]]:
    while chunk := list(islice(items, size)):
        yield chunk
