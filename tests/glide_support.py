"""Valkey GLIDE in tests: clients made inside the loop that uses them, and a sync view for the sync contract.

GLIDE is asyncio only and its clients are bound to the loop that created them. Async tests create theirs in
their own loop (`glide_client`). The core's contract is written against the sync API, so for the ``glide``
backends `SyncView` runs each sync call as its asyncio twin (``lookup`` -> ``alookup``...) on a loop thread
owning the test's GLIDE client, in a copy of the caller's context whose changes are copied back: the
per-context record of what lookups saw behaves exactly as it does for a sync caller.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["LoopThread", "SyncView", "glide_client", "SYNC_TWINS"]

# The sync methods of `AnswerCache` and their asyncio twins.
SYNC_TWINS = {
    "lookup": "alookup",
    "store": "astore",
    "discard": "adiscard",
    "invalidate_source": "ainvalidate_source",
    "invalidate_sources": "ainvalidate_sources",
    "invalidate_namespace": "ainvalidate_namespace",
    "invalidate_all": "ainvalidate_all",
    "dependents": "adependents",
    "clear": "aclear",
    "purge": "apurge",
    "stats": "astats",
    "doctor": "adoctor",
}

_MISSING = object()


async def glide_client(port: int, cluster: bool, timeout_ms: int = 5000) -> Any:
    """A GLIDE client on 127.0.0.1:`port`, created in the running loop (the loop it stays bound to)."""
    import glide

    nodes = [glide.NodeAddress("127.0.0.1", port)]
    if cluster:
        return await glide.GlideClusterClient.create(
            glide.GlideClusterClientConfiguration(nodes, request_timeout=timeout_ms)
        )
    return await glide.GlideClient.create(glide.GlideClientConfiguration(nodes, request_timeout=timeout_ms))


class LoopThread:
    """An event loop running on its own thread; `call` runs a coroutine there in the caller's context."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="glide-test-loop", daemon=True)
        self._thread.start()

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        ctx, done = self._start(fn, args, kwargs)
        result = done.result(60)
        _copy_back(ctx)
        return result

    async def acall(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`call` from another event loop: awaits the result there."""
        ctx, done = self._start(fn, args, kwargs)
        result = await asyncio.wait_for(asyncio.wrap_future(done), 60)
        _copy_back(ctx)
        return result

    def _start(
        self, fn: Callable[..., Any], args: Any, kwargs: Any
    ) -> tuple[contextvars.Context, concurrent.futures.Future[Any]]:
        ctx = contextvars.copy_context()
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def finished(task: asyncio.Task[Any]) -> None:
            exc = task.exception()
            if exc is not None:
                done.set_exception(exc)
            else:
                done.set_result(task.result())

        def start() -> None:
            task = self.loop.create_task(fn(*args, **kwargs), context=ctx)
            task.add_done_callback(finished)

        self.loop.call_soon_threadsafe(start)
        return ctx, done

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


def _copy_back(ctx: contextvars.Context) -> None:
    # What the call changed in its context (the record of lookups) is visible to the caller afterwards.
    for var, value in ctx.items():
        if var.get(_MISSING) is not value:
            var.set(value)


class SyncView:
    """An `AnswerCache` (or adapter) over GLIDE, its sync methods run as their asyncio twins on `loop`.

    Its async methods run on `loop` too, awaited from whatever loop calls them.
    """

    def __init__(self, cache: Any, loop: LoopThread) -> None:
        self._cache, self._loop = cache, loop

    def __getattr__(self, name: str) -> Any:
        twin = SYNC_TWINS.get(name)
        if twin is not None:
            method = getattr(self._cache, twin)
            return lambda *args, **kwargs: self._loop.call(method, *args, **kwargs)
        attr = getattr(self._cache, name)
        if inspect.iscoroutinefunction(attr):
            # An async method called from another loop (a test's own asyncio.run): it still runs on the loop
            # that owns the GLIDE client.
            async def bridged(*args: Any, **kwargs: Any) -> Any:
                return await self._loop.acall(attr, *args, **kwargs)

            return bridged
        return attr

    def __repr__(self) -> str:
        return f"SyncView({self._cache!r})"
