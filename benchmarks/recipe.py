"""Our design source's recipe, as a baseline: a hash per entry, a set per source, SCAN+DELETE per namespace.

Written the straightforward way its description suggests, pipelined where that is natural (one round trip
per write), with no tokens, no race protection and no cluster handling.

Example:
    >>> r = RecipeCache(valkey.Valkey(), prefix="recipe")  # doctest: +SKIP
    >>> r.store("docs", "q1", {"answer": "..."}, ["a.md"])  # doctest: +SKIP
    >>> r.invalidate_source("a.md")  # doctest: +SKIP
    1
"""

from __future__ import annotations

import json
import time
from typing import Any

__all__ = ["RecipeCache"]


class RecipeCache:
    def __init__(self, client: Any, prefix: str = "recipe", ttl: int = 21600) -> None:
        self.client, self.prefix, self.ttl = client, prefix, ttl

    def entry_key(self, namespace: str, key: str) -> str:
        return f"{self.prefix}:{namespace}:{key}"

    def lookup(self, namespace: str, key: str) -> Any:
        fields = self.client.hgetall(self.entry_key(namespace, key))
        return json.loads(fields[b"response"]) if fields else None

    def store(self, namespace: str, key: str, value: Any, sources: list[str], pipe: Any = None) -> None:
        k = self.entry_key(namespace, key)
        p = pipe if pipe is not None else self.client.pipeline(transaction=False)
        p.hset(k, mapping={"response": json.dumps(value), "sources": json.dumps(sources), "at": time.time()})
        p.expire(k, self.ttl)
        for source in sources:
            p.sadd(f"{self.prefix}:deps:{source}", k)
        if pipe is None:
            p.execute()

    def invalidate_source(self, source: str) -> int:
        deps = f"{self.prefix}:deps:{source}"
        keys = list(self.client.smembers(deps))
        for i in range(0, len(keys), 1000):
            self.client.delete(*keys[i : i + 1000])
        self.client.delete(deps)
        return len(keys)

    def invalidate_namespace(self, namespace: str) -> int:
        deleted, cursor = 0, 0
        while True:
            cursor, keys = self.client.scan(cursor, match=f"{self.prefix}:{namespace}:*", count=1000)
            if keys:
                deleted += self.client.delete(*keys)
            if int(cursor) == 0:
                return deleted
