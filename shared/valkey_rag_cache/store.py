"""Thin drivers that send the requests of the sans-IO operations (`ops`) over valkey-py, sync and asyncio.

What they send (a script call's commands, a pipeline's round after NOSCRIPT, a fan-out's calls per node) is
planned once in `plan.py`; each driver only sends it, with calls or awaited calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from valkey.exceptions import ConnectionError, MovedError, NoPermissionError, NoScriptError, TimeoutError

from .aline import AsyncLine, async_line
from .connection import Connector, forget_closed
from .direct import DirectLine, direct_line
from .glide_driver import GlideDriver
from .ops.requests import Call, Cmd, Eval, FanOut, Flow, NodeCmd, Primaries, adrive
from .plan import PipelineRound, by_node, eval_command, evalsha_command, load_command, raise_first
from .resharding import RETRY_PAUSE, gave_up, is_resharding

__all__ = ["AsyncDriver", "SyncDriver", "over_line"]

R = TypeVar("R")


def _scan_reply(reply: Any) -> Any:
    # The async cluster client answers a node-targeted SCAN with ({node name: cursor}, keys).
    if isinstance(reply, tuple | list) and len(reply) == 2 and isinstance(reply[0], dict):
        return next(iter(reply[0].values())), reply[1]
    return reply


def _commands(calls: list[Any]) -> tuple[list[Any], list[bool]]:
    # A raw fan-out's commands (`Cmd`s) for a line, and which are fixed (`Cmd.fixed`: packed once).
    return [c.args for c in calls], [c.fixed for c in calls]


def over_line(line: DirectLine, calls: list[Any]) -> list[Any]:
    """A raw fan-out's commands (`Cmd`s) sent over a direct line; their replies, or the first error raised."""
    return raise_first(line.pipeline(*_commands(calls)))


def _attempts(cluster_client: Any) -> int:
    # The first try and the retries valkey-py's cluster client makes after a dropped connection or a timeout.
    return 1 + int(getattr(cluster_client, "cluster_error_retry_attempts", 3))


_NO_LINE: tuple[Any, DirectLine | None] = (None, None)
_NO_ALINE: tuple[Any, AsyncLine | None] = (None, None)

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="valkey-rag-cache-fanout")
        return _executor


class SyncDriver:
    """Runs an operation with the sync client: one call (or one pipeline per shard) per yielded op.

    In a cluster, a call that meets a moving hash slot is retried for up to `settle_for` seconds (the cache's
    timeout): MOVED refreshes the slot map and goes to the new owner; a script waits while its slot is being
    migrated (single commands follow ASK through the cluster client).
    """

    def __init__(self, connector: Connector, settle_for: float = 0.5) -> None:
        self.connector = connector
        self.settle_for = settle_for
        self._lines: dict[str, tuple[Any, DirectLine | None]] = {}  # by node: (its client, its line)
        self._peeks = False  # lines whose replies `lookup.peek` reads (set when a line is made)

    def run(self, flow: Flow[R]) -> R:
        client = self.connector.sync_client()
        try:
            op = next(flow)
            while True:
                try:
                    reply = self._do(client, op)
                except Exception as exc:  # the operation may handle it (e.g. INFO refused by an ACL)
                    op = flow.throw(exc)
                else:
                    op = flow.send(reply)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]  # a generator's return is untyped

    def _do(self, client: Any, op: Any) -> Any:
        if isinstance(op, Eval | Cmd):
            if self.connector.cluster:
                return self._settled(client, op, time.monotonic() + self.settle_for)
            return self._single(client, op)
        if isinstance(op, FanOut):
            return self._fanout(client, op.calls, op.raw)
        if isinstance(op, Primaries):
            return client.get_primaries() if self.connector.cluster else [None]
        if isinstance(op, NodeCmd):
            return _scan_reply(self._node_client(client, op).execute_command(*op.args))
        raise TypeError(f"unknown operation {op!r}")

    def _node_client(self, client: Any, op: NodeCmd) -> Any:
        if not self.connector.cluster:
            return client
        node = op.node if op.node is not None else client.get_node_from_key(op.key)
        return client.get_valkey_connection(node)

    def _single(self, client: Any, op: Call) -> Any:
        if isinstance(op, Cmd):
            return client.execute_command(*op.args)
        if not self.connector.cluster:
            return self._eval(client, op, self._direct(client))
        # A script runs on the slot's owner only, never after an ASK redirect: on the importing node, a key
        # not migrated yet reads as missing, and a script would act on half a tree (an invalidation that
        # finds no token to replace). The owner refuses a script that touches a key it no longer holds.
        # A dropped connection or a timeout is retried as valkey-py's cluster client retries it.
        for attempt in range(_attempts(client)):
            node = client.get_node_from_key(op.keys[0])
            conn = client.get_valkey_connection(node)
            try:
                return self._eval(conn, op, self._direct(conn, node.name))
            except MovedError:
                client.nodes_manager.initialize()  # the slot map is out of date: read it anew, then retry
                raise
            except (ConnectionError, TimeoutError):
                with contextlib.suppress(Exception):  # the node may have failed over: learn the layout
                    client.nodes_manager.initialize()
                if attempt + 1 == _attempts(client):
                    raise
        raise AssertionError("unreachable")

    def _settled(self, client: Any, op: Call, deadline: float) -> Any:
        while True:
            try:
                return self._single(client, op)
            except Exception as exc:
                if not is_resharding(exc):
                    raise
                if time.monotonic() + RETRY_PAUSE > deadline:
                    raise gave_up(exc, self.settle_for) from exc
                moved = isinstance(exc, MovedError)  # the map was refreshed: retry at once
            if not moved:
                time.sleep(RETRY_PAUSE)

    def _direct(self, client: Any, node: str = "") -> DirectLine | None:
        # One line per client: the connector's (standalone), or each cluster node's (`node` names it).
        given, line = self._lines.get(node, _NO_LINE)
        if given is not client:  # made once per client (a node's changes when the cluster's layout does)
            line = direct_line(client)
            self._lines[node] = (client, line)
            self._peeks = line is not None and line.raw_replies
        return line

    @staticmethod
    def _eval(client: Any, op: Eval, line: DirectLine | None = None) -> Any:
        # The hot path: EVALSHA on this thread's own connection (the line), when the client has one.
        send = client.execute_command if line is None else line.send
        try:
            return send(*evalsha_command(op))
        except NoScriptError:
            try:
                client.execute_command(*load_command(op))
            except NoPermissionError:  # an ACL without SCRIPT LOAD: EVAL runs it (and caches it)
                return send(*eval_command(op))
            return send(*evalsha_command(op))

    def close(self) -> None:
        """Disconnect the direct lines (every thread's); they are made again on the next call."""
        lines, self._lines = self._lines, {}
        for _, line in lines.values():
            if line is not None:
                line.close()

    def eval_on(self, line: DirectLine, op: Eval) -> Any:
        """A script call on a standalone server's direct line (`peek_line`), loaded when it is missing."""
        return self._eval(self.connector.sync_client(), op, line)

    def peek_line(self) -> DirectLine | None:
        """A standalone server's direct line, when `lookup.peek` pays on it (known after a first call)."""
        if not self._peeks or self.connector.cluster:
            return None
        return self._direct(self.connector.sync_client())

    def direct(self) -> bool:
        """Does this driver send over direct lines (known after a first call)? Then `lookup.peek` pays."""
        return self._peeks  # a cluster's node lines are all made alike, from the cluster client's settings

    def _fanout(self, client: Any, calls: list[Call], raw: bool = False) -> list[Any]:
        if not calls:
            return []
        if not self.connector.cluster:
            line = self._direct(client) if raw else None
            if line is not None:  # commands whose raw replies the operation reads: over the direct line
                return over_line(line, calls)
            return self._pipeline(client, list(enumerate(calls)), [None] * len(calls))
        # One pipeline per primary, straight to its connection: cluster pipelines refuse EVALSHA.
        groups = by_node(calls, client.get_node_from_key)
        if raw and len(groups) == 1:  # one group's keys (a lookup's): over that node's line, as is
            node, items = groups[0]
            conn = client.get_valkey_connection(node)
            line = self._direct(conn, node.name)
            if line is not None:
                return over_line(line, [c for _, c in items])
        results: list[Any] = [None] * len(calls)

        def send(node: Any, items: list[tuple[int, Call]]) -> None:
            self._pipeline(client.get_valkey_connection(node), items, results, cluster_client=client)

        if len(groups) == 1:
            send(*groups[0])
        else:
            # The shards' pipelines go out together: one round trip in wall-clock time, not one per shard.
            # Every shard's pipeline is waited for before the first error is raised, as in the async driver.
            futures = [_pool().submit(send, node, items) for node, items in groups]
            errors = [exc for exc in (f.exception() for f in futures) if exc is not None]
            if errors:
                raise errors[0]
        return results

    def _pipeline(
        self, conn: Any, items: list[tuple[int, Call]], results: list[Any], cluster_client: Any = None
    ) -> list[Any]:
        round_ = PipelineRound([call for _, call in items])
        while True:
            pipe = conn.pipeline(transaction=False)
            for command in round_.commands():
                pipe.execute_command(*command)
            replies = pipe.execute(raise_on_error=False)
            scripts = round_.reload(replies)
            if not scripts:
                break
            try:
                for script in scripts:
                    conn.script_load(script.source)
            except NoPermissionError:
                round_.refused_load()
        deadline = time.monotonic() + self.settle_for
        first_error: Exception | None = None
        for (i, call), reply in zip(items, round_.replies, strict=True):
            if cluster_client is not None and is_resharding(reply):
                # Sent on a slot map that is out of date, or the slot is moving: retried on the owner after
                # refreshing the map (so the next fan-out goes to the right node), or until the slot settles.
                try:
                    reply = self._settled(cluster_client, call, deadline)
                except Exception as exc:
                    reply = exc
            if isinstance(reply, Exception):
                first_error = first_error or reply
            results[i] = reply
        if first_error is not None:
            raise first_error
        return results


class AsyncDriver:
    """The asyncio twin of `SyncDriver`, over valkey.asyncio."""

    def __init__(self, connector: Connector, settle_for: float = 0.5) -> None:
        self.connector = connector
        self.settle_for = settle_for
        self._glide = GlideDriver(connector) if connector.glide else None
        # Only a sync client was given: the same operations on it in a worker thread (one driver: its
        # direct lines are kept per thread, not made per call).
        self._threaded = SyncDriver(connector, settle_for)
        # By event loop, as the connector keeps its clients: (the loop's client, its line).
        self._lines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Any, AsyncLine | None]] = (
            weakref.WeakKeyDictionary()
        )
        self._peeks = False  # a line whose replies `lookup.peek` reads (set when it is made)

    def _aline(self, client: Any) -> AsyncLine | None:
        loop = asyncio.get_running_loop()
        entry = self._lines.get(loop)
        if entry is not None and entry[0] is client:
            return entry[1]
        if client is not self.connector.current_async():
            return None  # a client let go of (`aclose`), still finishing a call: its normal path
        line = async_line(client)  # made once per client (one per event loop)
        for gone in forget_closed(self._lines, keep=(loop, (client, line)), drop=loop):
            if gone[1] is None:
                continue
            if gone is entry:
                gone[1].shut()  # this loop's line of an older client
            else:
                gone[1].abandon()  # (nothing may be scheduled on a closed loop, not even a close)
        self._peeks = line is not None
        return line

    async def aclose(self) -> None:
        """Close this event loop's asyncio line (and let go of closed loops'); the sync lines of calls made
        in worker threads (an asyncio cache over a sync client) too."""
        loop = asyncio.get_running_loop()
        current = self._lines.get(loop)
        for entry in forget_closed(self._lines, drop=loop):
            line = entry[1]
            if line is None:
                continue
            if entry is current:
                await line.aclose()
            else:
                line.abandon()  # a closed loop's
        self._threaded.close()

    def direct(self) -> bool:
        """Does this driver send over an asyncio line (known after a first call)? Then `lookup.peek` pays."""
        return self._peeks and not self.connector.cluster

    def post(self, calls: list[Cmd]) -> bool:
        """Send counts on the line without waiting for them; False when that cannot be done now."""
        line = self._lines.get(asyncio.get_running_loop(), _NO_ALINE)[1]
        return line is not None and line.post(*_commands(calls))

    async def run(self, flow: Flow[R]) -> R:
        if self._glide is not None:  # a ready-made Valkey GLIDE client
            return await self._glide.run(flow)
        client = await self.connector.async_client()
        if client is None:
            # Only a sync client was given: run the same operation on it in a worker thread.
            return await asyncio.to_thread(self._threaded.run, flow)
        return await adrive(flow, self._do, client)

    async def _do(self, client: Any, op: Any) -> Any:
        if isinstance(op, Eval | Cmd):
            if self.connector.cluster:
                return await self._settled(client, op, time.monotonic() + self.settle_for)
            return await self._single(client, op)
        if isinstance(op, FanOut):
            return await self._fanout(client, op.calls, op.raw)
        if isinstance(op, Primaries):
            return client.get_primaries() if self.connector.cluster else [None]
        if isinstance(op, NodeCmd):
            if not self.connector.cluster:
                return await client.execute_command(*op.args)
            node = op.node if op.node is not None else client.get_node_from_key(op.key)
            return _scan_reply(await client.execute_command(*op.args, target_nodes=node))
        raise TypeError(f"unknown operation {op!r}")

    async def _single(self, client: Any, op: Call) -> Any:
        if isinstance(op, Cmd):
            return await client.execute_command(*op.args)
        if not self.connector.cluster:
            return await self._eval(self._aline(client) or client, op)
        # On the slot's owner only, never after an ASK redirect (see `SyncDriver._single`).
        await client.initialize()  # the async cluster client reads its slot map on first use (once)
        for attempt in range(_attempts(client)):
            node = client.get_node_from_key(op.keys[0])
            try:
                return await self._eval(node, op)
            except MovedError:
                await client.nodes_manager.initialize()
                raise
            except (ConnectionError, TimeoutError):
                with contextlib.suppress(Exception):
                    await client.nodes_manager.initialize()
                if attempt + 1 == _attempts(client):
                    raise
        raise AssertionError("unreachable")

    async def _settled(self, client: Any, op: Call, deadline: float) -> Any:
        while True:
            try:
                return await self._single(client, op)
            except Exception as exc:
                if not is_resharding(exc):
                    raise
                if time.monotonic() + RETRY_PAUSE > deadline:
                    raise gave_up(exc, self.settle_for) from exc
                moved = isinstance(exc, MovedError)
            if not moved:
                await asyncio.sleep(RETRY_PAUSE)

    @staticmethod
    async def _eval(target: Any, op: Eval) -> Any:
        # `target`: the client on a standalone server, the slot owner's node in a cluster (see `SyncDriver`).
        try:
            return await target.execute_command(*evalsha_command(op))
        except NoScriptError:
            try:
                await target.execute_command(*load_command(op))
            except NoPermissionError:  # an ACL without SCRIPT LOAD: EVAL runs it (and caches it)
                return await target.execute_command(*eval_command(op))
            return await target.execute_command(*evalsha_command(op))

    async def _fanout(self, client: Any, calls: list[Call], raw: bool = False) -> list[Any]:
        if not calls:
            return []
        line = self._aline(client) if raw and not self.connector.cluster else None
        if line is not None:  # commands whose raw replies the operation reads: over the line
            return raise_first(await line.pipeline(*_commands(calls)))
        if self.connector.cluster:
            # The async cluster client multiplexes over one connection per node: concurrent calls are sent
            # back to back, so each shard sees one burst. Like the sync driver, each call follows MOVED and
            # waits out a moving slot, and every call completes before the first error is raised.
            deadline = time.monotonic() + self.settle_for
            replies = await asyncio.gather(
                *(self._settled(client, c, deadline) for c in calls), return_exceptions=True
            )
            return raise_first(list(replies))
        round_ = PipelineRound(calls)
        while True:
            async with client.pipeline(transaction=False) as pipe:
                for command in round_.commands():
                    pipe.execute_command(*command)
                replies = await pipe.execute(raise_on_error=False)
            scripts = round_.reload(replies)
            if not scripts:
                break
            try:
                for script in scripts:
                    await client.script_load(script.source)
            except NoPermissionError:
                round_.refused_load()
        return raise_first(round_.replies)
