"""The hot path's direct line to a standalone Valkey: a connection per thread, commands packed here.

Two thirds of a valkey-py GET's client time is not the command: the pool (a lock, a ``can_read`` probe per
command), the retry wrapper, the generic packer and the response callbacks (performance-notes: a raw-socket
GET costs 24-27 µs, valkey-py's 66-89 µs). A lookup or a write script is one EVALSHA whose reply needs no
callback, so the driver sends it on a connection of its own, one per thread, made by the client's own
connection class from the client's own settings (authentication, TLS, database, protocol, timeouts), and
reads the reply with that connection's parser: the same reply types and the same errors as the normal path.

On a connection error (a restarted server, a killed or idle-closed connection) the line is dropped and the
command goes once through the client's normal path, which reconnects and retries as configured; a timeout
is raised as it is (as valkey-py raises it, unless the client retries on timeouts). A server's error reply
(NOSCRIPT, WRONGTYPE, a script error) leaves the connection in place: the reply was read whole.

Only plain clients get a line: ``valkey.Valkey`` over valkey-py's own pools and connection classes (TCP,
TLS, unix socket). A Sentinel pool, a client of another class or a custom connection class keeps the normal
path. Each line is one more connection per thread that makes lookups (outside a pool's ``max_connections``);
``VALKEY_RAG_CACHE_DIRECT=0`` turns lines off (every call then takes the client's normal path).

Example:
    >>> line = direct_line(valkey.Valkey.from_url("valkey://localhost:6379"))  # doctest: +SKIP
    >>> line.pipeline([("SET", "k", "v"), ("GET", "k")])  # doctest: +SKIP
    [b'OK', b'v']
"""

from __future__ import annotations

import builtins
import contextlib
import os
import threading
from collections.abc import Sequence
from typing import Any

import valkey
from valkey.connection import (
    BlockingConnectionPool,
    Connection,
    ConnectionPool,
    SSLConnection,
    UnixDomainSocketConnection,
)
from valkey.exceptions import ConnectionError, ResponseError, TimeoutError

from .resp import pack, read_replies

__all__ = ["SWITCH", "DirectLine", "Packer", "direct_line"]

_POOLS = (ConnectionPool, BlockingConnectionPool)
_MEMO = 4096  # fixed commands packed once per line (two per namespace in use)
_CONNECTIONS = (Connection, SSLConnection, UnixDomainSocketConnection)


def _utf8(pool: Any) -> bool:
    # Does the client's encoder write a str as UTF-8, strictly (valkey-py's default)? Then `pack` does too.
    encoder = pool.get_encoder()
    return (encoder.encoding.replace("-", "").lower(), encoder.encoding_errors) == ("utf8", "strict")


class Packer:
    """Commands in RESP with a client pool's encoder; a fixed command (a group's clock, its index membership:
    the same on every call) is packed once. Shared by the sync and the asyncio lines."""

    __slots__ = ("_encode", "_utf8", "_memo")

    def __init__(self, pool: Any) -> None:
        self._encode = pool.get_encoder().encode
        self._utf8 = _utf8(pool)
        self._memo: dict[Any, bytes] = {}

    def one(self, args: Any, fixed: bool = False) -> bytes:
        if not fixed:
            return pack(args, self._encode, self._utf8)
        packed = self._memo.get(args)
        if packed is None:
            packed = pack(args, self._encode, self._utf8)
            if len(self._memo) < _MEMO:
                self._memo[args] = packed
        return packed

    def many(self, commands: Sequence[Sequence[Any]], fixed: Sequence[bool] = ()) -> bytes:
        """A pipeline's commands as one write; `fixed[i]`: command i is packed once."""
        fixed = fixed or [False] * len(commands)
        return b"".join([self.one(args, f) for args, f in zip(commands, fixed, strict=True)])


class DirectLine:
    """A connection per thread (and per process: a forked child makes its own) to `client`'s server."""

    __slots__ = (
        "_packer",
        "_client",
        "_cls",
        "_kwargs",
        "_local",
        "_own_parser",
        "_retry_timeouts",
        "_generation",
        "raw_replies",
    )

    def __init__(self, client: valkey.Valkey) -> None:
        pool = client.connection_pool
        self._client = client
        self._cls = pool.connection_class
        self._kwargs = dict(pool.connection_kwargs)
        self._packer = Packer(pool)
        self._retry_timeouts = bool(self._kwargs.get("retry_on_timeout"))
        self.raw_replies = not self._kwargs.get("decode_responses")  # bytes, as the scripts' callers expect
        # RESP2 replies, undecoded: read by `resp` (the connection's parser handles anything else).
        self._own_parser = self.raw_replies and str(self._kwargs.get("protocol") or 2) == "2"
        self._local = threading.local()
        self._generation = 0  # bumped by `close`: a connection of an older one is closed by its own thread

    def _connection(self) -> Any:
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is not None and local.generation != self._generation:
            self._drop(conn)  # closed here, by the thread that uses it (`close`)
            conn = None
        if conn is None or conn.pid != os.getpid():
            conn = local.conn = self._cls(**self._kwargs)  # connects on first use
            local.generation = self._generation
        return conn

    def close(self) -> None:
        """Disconnect this thread's connection now, and every other thread's at its next call (a connection
        is never closed under a call another thread is making); a thread that ended took its own along."""
        self._generation += 1
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            with contextlib.suppress(Exception):  # (a server already gone)
                self._drop(conn)

    def _drop(self, conn: Any) -> None:
        self._local.conn = None
        conn.disconnect()

    def send(self, *args: Any) -> Any:
        """Send one command whose reply needs no response callback (EVALSHA); its reply, or its error."""
        return self._run((args,), self._packer.one(args), single=True)

    def pipeline(self, commands: Sequence[Sequence[Any]], fixed: Sequence[bool] = ()) -> list[Any]:
        """Send commands whose replies need no callback in one write; their replies (errors as values).

        `fixed[i]`: command i is the same on every call (packed once). After a connection error they go
        again through the client's pipeline (which applies its callbacks: SISMEMBER then answers a bool).
        """
        return self._run(commands, self._packer.many(commands, fixed), single=False)  # type: ignore[no-any-return]

    def _run(self, commands: Sequence[Sequence[Any]], packed: bytes, single: bool) -> Any:
        # Packed before anything is sent: an argument that cannot be encoded raises with the line intact.
        conn = self._connection()
        try:
            replies: list[Any]
            if conn._sock is None:
                conn.connect()  # first use (valkey-py's handshake: AUTH, SELECT, client name)
            if self._own_parser:
                sock = conn._sock
                try:
                    # Written straight to the socket: what valkey-py's send_packed_command adds (a type test,
                    # a loop, its own error wrapping) is the same errors, caught below, for ~1 µs a call.
                    sock.sendall(packed)
                    # Errors as the connection's parser names them (a cluster node's knows MOVED, ASK).
                    replies = read_replies(sock, len(commands), type(conn._parser).parse_error)
                except builtins.TimeoutError:  # socket.timeout
                    raise TimeoutError("Timeout on the direct line") from None
                except OSError as exc:
                    raise ConnectionError(f"Error on the direct line: {exc}") from None
            else:
                conn.send_packed_command((packed,), check_health=False)
                replies = []
                for _ in commands:
                    try:
                        replies.append(conn.read_response())
                    except ResponseError as exc:  # read whole: the next reply follows
                        replies.append(exc)
            if single and isinstance(replies[0], ResponseError):
                raise replies[0]
            return replies[0] if single else replies
        except ConnectionError:
            self._drop(conn)
        except TimeoutError:
            self._drop(conn)
            if not self._retry_timeouts:
                raise
        except ResponseError:
            raise  # an error reply, read whole (NOSCRIPT, a script error): the connection is in step
        except BaseException:
            # A reply that does not parse, or an interruption mid-command: what is left unread is unknown.
            self._drop(conn)
            raise
        # The normal path reconnects and retries as the client is configured to.
        if single:
            return self._client.execute_command(*commands[0])
        pipe = self._client.pipeline(transaction=False)
        for args in commands:
            pipe.execute_command(*args)
        return pipe.execute(raise_on_error=False)


SWITCH = "VALKEY_RAG_CACHE_DIRECT"  # "0": no direct line (no connection per thread; every call as before)


def direct_line(client: Any) -> DirectLine | None:
    """A `DirectLine` for a plain standalone valkey-py client; None for anything else (the normal path)."""
    if type(client) is not valkey.Valkey or os.environ.get(SWITCH, "1") == "0":
        return None
    pool: Any = getattr(client, "connection_pool", None)
    if type(pool) not in _POOLS or pool.connection_class not in _CONNECTIONS:
        return None
    return DirectLine(client)
