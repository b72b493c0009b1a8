"""The asyncio twin of `direct.py`: one connection per client, shared by all its coroutines, replies in order.

valkey.asyncio runs one command (or pipeline) at a time per connection, drawn from a pool: at 64 concurrent
lookups most of its time goes to the pool and to reading each reply on its own (performance-notes: a bare
EVALSHA through it reaches 0.77x of its GET). Here every request goes to one connection, and one reader
task hands each request its replies as they arrive: the server answers a connection's commands in order, so
the first request waiting is the one the next replies belong to. Valkey GLIDE works the same way (one
multiplexed connection per node). A request is written at once when no other caller waits; while one does,
the requests of one turn of the event loop (the tasks a batch of replies woke) are written together, one
system call and one wake-up of the server for all of them: a write per request made a 64-task loop spend
~19 µs per lookup in the kernel, together ~3 µs.

The connection is made by the client's own connection class from the client's settings (authentication,
TLS, database, client name, timeouts), so the handshake is valkey-py's. Replies are read by `resp`, errors
named by valkey-py's mapping (`resp.error_of`), as on the sync line.

- A request that times out (the client's ``socket_timeout``) raises valkey-py's `TimeoutError` and drops the
  connection: a server that stopped answering may never answer the requests queued behind it.
- A dropped connection (a restarted server, a killed connection, a timeout) fails every request waiting on
  it with `ConnectionError`; each is sent once more through the client's normal path, which reconnects and
  retries as configured. The next request makes a new connection.
- A caller cancelled while waiting leaves its request in the queue: its replies are read and dropped, and
  the connection stays in step.

Only a plain ``valkey.asyncio.Valkey`` over valkey-py's own pools and connection classes, with RESP2 replies
undecoded, gets a line (`async_line`); ``VALKEY_RAG_CACHE_DIRECT=0`` turns lines off, as for the sync line.

Example:
    >>> line = async_line(valkey.asyncio.Valkey.from_url("valkey://localhost:6379"))  # doctest: +SKIP
    >>> await line.pipeline([("SET", "k", "v"), ("GET", "k")])  # doctest: +SKIP
    [b'OK', b'v']
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import deque
from collections.abc import Sequence
from typing import Any

import valkey.asyncio as avalkey
from valkey.asyncio.connection import (
    BlockingConnectionPool,
    Connection,
    ConnectionPool,
    SSLConnection,
    UnixDomainSocketConnection,
)
from valkey.exceptions import ConnectionError, ResponseError, TimeoutError

from .direct import SWITCH, Packer
from .resp import Incomplete, frozen, parse_many

__all__ = ["AsyncLine", "async_line"]

_POOLS = (ConnectionPool, BlockingConnectionPool)
_CONNECTIONS = (Connection, SSLConnection, UnixDomainSocketConnection)
_HIGH_WATER = 1 << 16  # bytes waiting in the transport before a writer waits for them to drain
_RECONNECT_AFTER = 1.0  # seconds after a failed connect during which calls take the normal path


class _Link:
    """One connected connection, its queue of requests waiting for replies, and the task that reads them."""

    __slots__ = ("conn", "writer", "waiting", "awaited", "alive", "pid", "reader", "held", "loop")

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.loop = asyncio.get_running_loop()
        self.writer = conn._writer
        # (future, number of replies); a None future: a request nobody waits for (`post`).
        self.waiting: deque[tuple[asyncio.Future[list[Any]] | None, int]] = deque()
        self.awaited = 0  # requests in `waiting` whose caller waits for the reply (not posted counts)
        self.alive = True
        self.pid = os.getpid()
        self.held: list[bytes] = []  # requests not written yet, in order: with the next one written, or soon
        self.reader = self.loop.create_task(self._read(conn._reader))
        # Pending for as long as the connection lives, also when its loop is closed (tasks not cancelled) or
        # the process exits: asyncio's "Task was destroyed but it is pending!" would blame the user for ours.
        with contextlib.suppress(AttributeError):
            self.reader._log_destroy_pending = False  # type: ignore[attr-defined]

    def request(self, packed: bytes, n: int, wait: bool = True) -> asyncio.Future[list[Any]] | None:
        if not self.alive or self.writer.is_closing():
            self.fail(ConnectionError("the direct line is closed"))  # (closing: the reader may not know yet)
            raise ConnectionError("the direct line is closed")
        loop = asyncio.get_running_loop()
        fut = loop.create_future() if wait else None
        self.waiting.append((fut, n))
        if wait:
            self.awaited += 1
            if self.awaited == 1:
                # No other caller waiting (one at a time, most likely): written now, with what was held.
                if self.held:
                    self.held.append(packed)
                    packed = b"".join(self.held)
                    self.held.clear()
                self.writer.write(packed)
                return fut
        # Held back, in order, while another caller waits: the requests this turn of the event loop makes
        # (the tasks a batch of replies woke) go out in one write, one system call and one wake-up of the
        # server for all of them instead of one each.
        if not self.held:
            loop.call_soon(self._write_held)
        self.held.append(packed)
        return fut

    def _write_held(self) -> None:
        if self.held and self.alive:
            data = b"".join(self.held)
            self.held.clear()
            try:
                self.writer.write(data)
            except Exception as exc:  # noqa: BLE001  # a transport that refuses: nobody may wait in vain
                self.fail(ConnectionError(f"Error while writing to the direct line: {exc}"))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        buf: bytes | bytearray = b""
        try:
            while True:
                chunk = await reader.read(1 << 16)
                if not chunk:
                    raise ConnectionError("Connection closed by server.")
                if not buf:
                    buf = chunk  # the usual case: a read holds whole replies, sliced without a copy
                else:
                    if type(buf) is bytes:
                        buf = bytearray(buf)  # a reply over several reads: grown in place (linear)
                    buf += chunk
                pos = 0
                while self.waiting:
                    fut, n = self.waiting[0]
                    try:
                        replies, pos = parse_many(buf, pos, n)
                    except Incomplete:
                        break
                    self.waiting.popleft()
                    if fut is not None:
                        self.awaited -= 1
                        if not fut.done():  # (done: its caller was cancelled)
                            fut.set_result(replies if type(buf) is bytes else frozen(replies))
                if pos == len(buf):
                    buf = b""
                elif pos:
                    buf = buf[pos:]
                if buf and not self.waiting:
                    raise ConnectionError("the server sent a reply nobody asked for")
        except BaseException as exc:  # noqa: BLE001  # a lost connection, a bad reply, or cancelled
            self.fail(exc)

    def fail(self, why: BaseException) -> None:
        """Drop the connection; every request still waiting fails with `ConnectionError`."""
        if not self.alive:
            return
        if self.loop.is_closed():
            self.abandon()  # (the reader finalized after its loop closed)
            return
        self.alive = False
        # abort(), not close(): close() waits for the buffer to drain, which a frozen server never does (and
        # what a failed-over request left in it would run a second time, when the server woke).
        self.writer.transport.abort()
        self.conn._reader = self.conn._writer = None  # closed here: valkey-py has nothing left to close
        self.reader.cancel()
        error = (
            why if isinstance(why, ConnectionError) else ConnectionError(f"the direct line closed: {why!r}")
        )
        while self.waiting:
            fut, _ = self.waiting.popleft()
            if fut is not None and not fut.done():
                fut.set_exception(error)

    def abandon(self) -> None:
        """Let go of a link whose event loop closed while its reader waited (a loop closed without its tasks
        cancelled first: ``asyncio.run`` cancels them, and `fail` then closes the connection in the loop).

        Nothing can be scheduled on a closed loop, and nobody waits on it: the futures are dropped, and the
        socket is closed by its transport's finalizer.
        """
        self.alive = False
        self.conn._reader = self.conn._writer = None  # valkey-py's finalizer would schedule a close
        self.waiting.clear()
        self.held.clear()


class AsyncLine:
    """One shared connection to `client`'s server, for requests whose replies need no callback."""

    __slots__ = (
        "_client",
        "_cls",
        "_kwargs",
        "_packer",
        "_timeout",
        "_retry_timeouts",
        "_link",
        "_lock",
        "_retry_at",
        "_closed",
    )

    def __init__(self, client: Any) -> None:
        pool = client.connection_pool
        self._client = client
        self._cls = pool.connection_class
        self._kwargs = dict(pool.connection_kwargs)
        self._packer = Packer(pool)
        self._timeout: float | None = self._kwargs.get("socket_timeout")
        # A client that retries on timeouts: a timed-out request goes through its normal path, as on the
        # sync line.
        self._retry_timeouts = bool(self._kwargs.get("retry_on_timeout"))
        self._link: _Link | None = None
        self._lock: asyncio.Lock | None = None
        self._retry_at = 0.0  # the loop's time before which no connect is tried (after one failed)
        self._closed = False  # `shut`: never connects again (a caller still holding it takes the normal path)

    async def _up(self) -> _Link:
        link = self._link
        if link is not None and link.alive and link.pid == os.getpid():
            return link
        if self._closed:
            raise ConnectionError("the direct line is closed")
        loop = asyncio.get_running_loop()
        if self._lock is None:
            self._lock = asyncio.Lock()
        # While one coroutine connects (or for a second after a connect failed), the others take the normal
        # path: a queue of connect attempts, each up to the connect timeout, would make a slow server's misses
        # slower than the pool's.
        if self._lock.locked() or loop.time() < self._retry_at:
            raise ConnectionError("the direct line is connecting")
        async with self._lock:
            conn = self._cls(**self._kwargs)
            try:
                await conn.connect()  # valkey-py's handshake: AUTH, SELECT, CLIENT SETNAME, ...
            except BaseException as exc:
                if isinstance(exc, GeneratorExit):
                    raise  # finalized (its loop closed mid-connect): nothing may be awaited any more
                if isinstance(exc, Exception):  # (not a cancelled caller)
                    self._retry_at = loop.time() + _RECONNECT_AFTER
                with contextlib.suppress(Exception):
                    await conn.disconnect(nowait=True)
                raise
            link = self._link = _Link(conn)
        return link

    async def _run(self, packed: bytes, n: int) -> list[Any]:
        link = await self._up()
        fut = link.request(packed, n)
        assert fut is not None
        # The timeout runs from the request (written now or within this turn of the loop): waiting for a
        # full buffer to drain counts too.
        timer = None
        if self._timeout is not None:
            timer = asyncio.get_running_loop().call_later(self._timeout, _expire, link, fut)
        try:
            if link.writer.transport.get_write_buffer_size() > _HIGH_WATER:
                try:
                    await link.writer.drain()
                except OSError as exc:  # the connection went while its buffer drained (or timed out)
                    link.fail(ConnectionError(f"Error while writing to the direct line: {exc}"))
            return await fut
        finally:
            if timer is not None:
                timer.cancel()
            if not fut.done():
                # Left while draining (cancelled): its replies are read and dropped. Not on a loop that closed
                # while this waited (finalized then): nothing can be scheduled on it, nobody reads the reply.
                if not fut.get_loop().is_closed():
                    fut.cancel()
            elif not fut.cancelled():
                fut.exception()  # read: a failure that came while draining is not logged as never retrieved

    async def pipeline(self, commands: Sequence[Sequence[Any]], fixed: Sequence[bool] = ()) -> list[Any]:
        """Send commands in one write; their replies (errors as values), as `DirectLine.pipeline` returns."""
        try:
            return await self._run(self._packer.many(commands, fixed), len(commands))
        except ConnectionError:
            pass
        except TimeoutError:
            if not self._retry_timeouts:
                raise
        async with self._client.pipeline(transaction=False) as pipe:  # the normal path retries
            for args in commands:
                pipe.execute_command(*args)
            return list(await pipe.execute(raise_on_error=False))

    async def execute_command(self, *args: Any) -> Any:
        """One command whose reply needs no response callback (EVALSHA, SCRIPT LOAD); its error raised."""
        try:
            reply = (await self._run(self._packer.one(args), 1))[0]
        except ConnectionError:
            return await self._client.execute_command(*args)
        except TimeoutError:
            if not self._retry_timeouts:
                raise
            return await self._client.execute_command(*args)
        if isinstance(reply, ResponseError):
            raise reply
        return reply

    def shut(self) -> None:
        """Close the connection, in its event loop, for good: requests waiting on it, and any made later
        through this line, take the client's normal path."""
        self._closed = True
        link, self._link = self._link, None
        if link is not None and link.alive:
            link.fail(ConnectionError("the direct line was closed"))

    async def aclose(self) -> None:
        """`shut`, then wait for the reader to finish (no task of the line is left)."""
        link = self._link
        self.shut()
        if link is not None:
            with contextlib.suppress(BaseException):  # (cancelled by `fail`: nothing to report)
                await link.reader

    def abandon(self) -> None:
        """Its event loop closed: let go of the connection without scheduling anything (`_Link.abandon`)."""
        link, self._link = self._link, None
        if link is not None and link.alive:
            link.abandon()

    def post(self, commands: Sequence[Sequence[Any]], fixed: Sequence[bool] = ()) -> bool:
        """Send commands nobody waits for (counts); False when there is no live connection to send them on."""
        link = self._link
        if link is None or not link.alive or link.pid != os.getpid():
            return False
        try:
            link.request(self._packer.many(commands, fixed), len(commands), wait=False)
        except ConnectionError:
            return False
        return True


def _expire(link: _Link, fut: asyncio.Future[list[Any]]) -> None:
    # A request outlived the client's timeout: it fails as valkey-py's would, and the connection goes (the
    # requests behind it on a server that stopped answering would wait as long).
    if not fut.done():
        fut.set_exception(TimeoutError("Timeout reading from the direct line"))
        link.fail(ConnectionError("the direct line was dropped after a timeout"))


def async_line(client: Any) -> AsyncLine | None:
    """An `AsyncLine` for a plain standalone valkey.asyncio client; None for anything else."""
    if type(client) is not avalkey.Valkey or os.environ.get(SWITCH, "1") == "0":
        return None
    pool: Any = getattr(client, "connection_pool", None)
    if type(pool) not in _POOLS or pool.connection_class not in _CONNECTIONS:
        return None
    kwargs = pool.connection_kwargs
    if kwargs.get("decode_responses") or str(kwargs.get("protocol") or 2) != "2":
        return None  # replies as `resp` reads them: undecoded RESP2
    return AsyncLine(client)
