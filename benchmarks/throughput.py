"""asyncio throughput: lookups (hits) from `c` concurrent tasks, against raw asyncio GET at the same `c`.

A case's figure is seconds per op (wall time of `ops` lookups divided by `ops`); the report turns it into
ops/s. One process, one event loop, one client: what a single async worker of an app can push. Two clients:
valkey.asyncio (``tp.raw``, ``tp.core``, ``tp.lc``) and Valkey GLIDE (``tp.graw``: its GET; ``tp.gcore``: the
core given a ready-made ``GlideClient``, reading the same stored answers as ``tp.core``).

Example:
    >>> cases = throughput_cases(env, ops=4000)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from latency import NAMESPACE, TIMEOUT, Env, hit, prompt
from payloads import LLM_STRING

from valkey_rag_cache import AnswerCache

__all__ = ["CONCURRENCY", "Batch", "throughput_cases", "glide_core"]

CONCURRENCY = (1, 16, 64)


@dataclass
class Batch:
    """`ops` calls of `op` spread over `concurrency` tasks; one sample: wall seconds per op (in ns)."""

    name: str
    op: Callable[[int], Awaitable[Any]]
    concurrency: int
    loop: asyncio.AbstractEventLoop

    def run(self, ops: int, start: int) -> list[int]:
        return [self.loop.run_until_complete(self._run(ops, start))]

    async def _run(self, ops: int, start: int) -> int:
        counter = iter(range(start, start + ops))
        op = self.op

        async def worker() -> None:
            for i in counter:
                await op(i)

        t0 = time.perf_counter_ns()
        await asyncio.gather(*(worker() for _ in range(self.concurrency)))
        return (time.perf_counter_ns() - t0) // max(ops, 1)


def throughput_cases(env: Env, concurrency: tuple[int, ...] = CONCURRENCY) -> list[Batch]:
    araw, core, loop, n_hot = env.araw, env.core, env.loop, env.hot
    hot = [core.key("qa", {"q": f"hot-{i}"}) for i in range(n_hot)]

    async def raw(i: int) -> Any:
        return await araw.get(f"bench:raw:hot:{i % n_hot}")

    async def ours(i: int) -> Any:
        return hit(await core.alookup(hot[i % n_hot]))

    ops: dict[str, Callable[[int], Awaitable[Any]]] = {"raw": raw, "core": ours}
    made = glide_core(env)
    if made is not None:
        graw, gcore = made

        async def glide_get(i: int) -> Any:
            return hit(await graw.get(f"bench:raw:hot:{i % n_hot}"))

        async def glide_ours(i: int) -> Any:
            return hit(await gcore.alookup(hot[i % n_hot]))

        ops.update(graw=glide_get, gcore=glide_ours)
    if env.lc.available:
        lc = env.lc.cache

        async def lc_hit(i: int) -> Any:
            return hit(await lc.alookup(prompt("hot", i % n_hot), LLM_STRING))

        ops["lc"] = lc_hit
    return [Batch(f"tp.{name}.c{c}", op, c, loop) for c in concurrency for name, op in ops.items()]


def glide_core(env: Env) -> tuple[Any, AnswerCache] | None:
    """A GLIDE client on the harness's loop and the core over it (same prefix: the same stored answers).

    None, with the reason in ``env.extras["glide_reason"]``, when valkey-glide is not installed.
    """
    if "glide" in env.extras:
        return env.extras["glide"]  # type: ignore[no-any-return]
    try:
        import glide
    except ImportError:
        env.extras["glide_reason"] = "valkey-glide not installed (extra `glide`)"
        return None
    from urllib.parse import urlsplit

    where = urlsplit(env.url)
    config = glide.GlideClientConfiguration(
        [glide.NodeAddress(where.hostname or "127.0.0.1", where.port or 6379)],
        request_timeout=int(TIMEOUT * 1000),  # the same timeout as every other client of the harness
    )
    client = env.run(glide.GlideClient.create(config))
    core = AnswerCache(client=client, prefix=env.core.schema.prefix, namespace=NAMESPACE)
    env.extras["glide"] = (client, core)
    return client, core
