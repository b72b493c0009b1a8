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
path. Each line is one more connection per thread that makes lookups (outside a pool's ``max_connections``).

Example:
    >>> pack((b"EVALSHA", b"ab", b"1", "k"), str.encode)
    b'*4\\r\\n$7\\r\\nEVALSHA\\r\\n$2\\r\\nab\\r\\n$1\\r\\n1\\r\\n$1\\r\\nk\\r\\n'
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
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

__all__ = ["DirectLine", "direct_line", "pack"]

_POOLS = (ConnectionPool, BlockingConnectionPool)
_CONNECTIONS = (Connection, SSLConnection, UnixDomainSocketConnection)


def pack(args: Sequence[Any], encode: Callable[[Any], bytes]) -> bytes:
    """One command in RESP: bytes go as they are, anything else through `encode` (the client's encoder)."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if type(arg) is not bytes:
            arg = encode(arg)
        out.append(b"$%d\r\n%b\r\n" % (len(arg), arg))
    return b"".join(out)


def _encoder(pool: Any) -> Callable[[Any], bytes]:
    encoder = pool.get_encoder()
    slow = encoder.encode
    if (encoder.encoding.replace("-", ""), encoder.encoding_errors) != ("utf8", "strict"):
        return slow  # type: ignore[no-any-return]

    def encode(arg: Any) -> bytes:
        return arg.encode() if type(arg) is str else slow(arg)  # a str as valkey-py's default encodes it

    return encode


class DirectLine:
    """A connection per thread (and per process: a forked child makes its own) to `client`'s server."""

    __slots__ = ("_client", "_cls", "_encode", "_kwargs", "_local", "_retry_timeouts", "raw_replies")

    def __init__(self, client: valkey.Valkey) -> None:
        pool = client.connection_pool
        self._client = client
        self._cls = pool.connection_class
        self._kwargs = dict(pool.connection_kwargs)
        self._encode = _encoder(pool)
        self._retry_timeouts = bool(self._kwargs.get("retry_on_timeout"))
        self.raw_replies = not self._kwargs.get("decode_responses")  # bytes, as the scripts' callers expect
        self._local = threading.local()

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.pid != os.getpid():
            conn = self._local.conn = self._cls(**self._kwargs)  # connects on first use
        return conn

    def _drop(self, conn: Any) -> None:
        self._local.conn = None
        conn.disconnect()

    def send(self, *args: Any) -> Any:
        """Send one command whose reply needs no response callback (EVALSHA); its reply, or its error."""
        return self._run((args,), single=True)

    def pipeline(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send commands whose replies need no callback in one write; their replies (errors as values).

        After a connection error they go again through the client's pipeline (which applies its callbacks:
        SISMEMBER then answers a bool, not 0 or 1).
        """
        return self._run(commands, single=False)  # type: ignore[no-any-return]

    def _run(self, commands: Sequence[Sequence[Any]], single: bool) -> Any:
        packed = b"".join([pack(args, self._encode) for args in commands])
        conn = self._connection()
        try:
            conn.send_packed_command((packed,), check_health=False)
            if single:
                return conn.read_response()
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(conn.read_response())
                except ResponseError as exc:  # read whole: the next reply follows
                    replies.append(exc)
            return replies
        except ConnectionError:
            self._drop(conn)
        except TimeoutError:
            self._drop(conn)
            if not self._retry_timeouts:
                raise
        except (valkey.ValkeyError, ValueError):
            raise  # a reply read whole (NOSCRIPT, a script error), or the argument could not be encoded
        except BaseException:
            self._drop(conn)  # interrupted mid-command: the connection's state is unknown
            raise
        # The normal path reconnects and retries as the client is configured to.
        if single:
            return self._client.execute_command(*commands[0])
        pipe = self._client.pipeline(transaction=False)
        for args in commands:
            pipe.execute_command(*args)
        return pipe.execute(raise_on_error=False)


def direct_line(client: Any) -> DirectLine | None:
    """A `DirectLine` for a plain standalone valkey-py client; None for anything else (the normal path)."""
    if type(client) is not valkey.Valkey:
        return None
    pool: Any = getattr(client, "connection_pool", None)
    if type(pool) not in _POOLS or pool.connection_class not in _CONNECTIONS:
        return None
    return DirectLine(client)
