"""RESP2, the few parts the direct line needs: packing a command, and reading replies off a socket.

valkey-py's Python parser costs about 6 µs a reply (a buffer object, a readline per element); the hot path
reads four small replies per lookup. This reader parses what one ``recv`` brought, asking for more only
when a reply is incomplete. Replies come back as valkey-py's RESP2 parser returns them without decoding:
bulk and simple strings as bytes, integers as int, arrays as lists, nil as None, and an error as the
exception valkey-py would raise (`error_of`, valkey-py's own mapping), a value inside an array.

Example:
    >>> pack((b"GET", "k"), str.encode)
    b'*2\\r\\n$3\\r\\nGET\\r\\n$1\\r\\nk\\r\\n'
    >>> parse(b"*3\\r\\n$2\\r\\nhi\\r\\n:7\\r\\n$-1\\r\\n", 0)
    ([b'hi', 7, None], 21)
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from typing import Any

from valkey._parsers.base import BaseParser
from valkey.exceptions import ConnectionError, InvalidResponse, ResponseError

__all__ = ["Incomplete", "error_of", "frozen", "pack", "parse", "parse_many", "read_replies"]


def pack(args: Sequence[Any], encode: Callable[[Any], bytes], utf8: bool = False) -> bytes:
    """One command in RESP: bytes go as they are, anything else through `encode` (the client's encoder);
    `utf8`: that encoder writes a str as UTF-8, strictly (valkey-py's default), so a str is encoded here."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        kind = type(arg)
        if kind is not bytes:
            arg = arg.encode() if utf8 and kind is str else encode(arg)
        out.append(b"$%d\r\n%b\r\n" % (len(arg), arg))
    return b"".join(out)


class Incomplete(Exception):
    """The buffer ends inside a reply: read more."""


Errors = Callable[[str], ResponseError]  # an error reply's text -> its exception (a valkey-py parser's)


def error_of(line: bytes | bytearray, errors: Errors = BaseParser.parse_error) -> ResponseError:
    """The exception valkey-py makes of an error reply (NOSCRIPT -> NoScriptError; a cluster node's parser
    also knows MOVED, ASK, TRYAGAIN, ...)."""
    return errors(bytes(line).decode("utf-8", "replace"))


def parse(buf: bytes | bytearray, pos: int, errors: Errors = BaseParser.parse_error) -> tuple[Any, int]:
    """One reply starting at `pos`: (the reply, where the next starts); `Incomplete` if it is cut short."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise Incomplete
    kind = buf[pos]
    if kind == 36:  # '$' a bulk string
        n = int(buf[pos + 1 : end])
        if n < 0:
            return None, end + 2
        stop = end + 2 + n
        if len(buf) < stop + 2:
            raise Incomplete
        return buf[end + 2 : stop], stop + 2
    if kind == 58:  # ':' an integer
        return int(buf[pos + 1 : end]), end + 2
    if kind == 42:  # '*' an array
        n = int(buf[pos + 1 : end])
        if n < 0:
            return None, end + 2
        pos, items, size = end + 2, [], len(buf)
        for _ in range(n):
            # A bulk string read here, not by a call (most arrays hold only those: a clock's fields, values).
            end = buf.find(b"\r\n", pos)
            if end > 0 and buf[pos] == 36:
                length = int(buf[pos + 1 : end])
                stop = end + 2 + length
                if length >= 0 and size >= stop + 2:
                    items.append(buf[end + 2 : stop])
                    pos = stop + 2
                    continue
            item, pos = parse(buf, pos, errors)
            items.append(item)
        return items, pos
    if kind == 43:  # '+' a simple string
        return buf[pos + 1 : end], end + 2
    if kind == 45:  # '-' an error
        return error_of(buf[pos + 1 : end], errors), end + 2
    raise InvalidResponse(f"Protocol Error: {buf[pos : pos + 1]!r}")


def parse_many(
    buf: bytes | bytearray, pos: int, n: int, errors: Errors = BaseParser.parse_error
) -> tuple[list[Any], int]:
    """`n` replies starting at `pos`, and where the next starts; `Incomplete` if the buffer ends first."""
    replies = []
    for _ in range(n):
        reply, pos = parse(buf, pos, errors)
        replies.append(reply)
    return replies, pos


def read_replies(sock: socket.socket, n: int, errors: Errors = BaseParser.parse_error) -> list[Any]:
    """Read `n` replies from `sock` (its timeout applies to each ``recv``).

    The first read is parsed as it came; what arrives after it is appended to one buffer (linear in the
    replies' size, however many reads they take). A reply cut short is parsed again from its start once
    more has come, which for a large value costs one header line per read.
    """
    if n <= 0:
        return []
    buf: bytes | bytearray = _recv(sock)
    pos = 0
    replies: list[Any] = []
    while len(replies) < n:
        try:
            reply, pos = parse(buf, pos, errors)
        except Incomplete:
            if type(buf) is bytes:
                buf = bytearray(buf)  # a second read: grow in place from here on
            buf += _recv(sock)
            continue
        replies.append(reply)
    return replies if type(buf) is bytes else frozen(replies)


def _recv(sock: socket.socket) -> bytes:
    # The usual case: every reply in the first read, sliced from it without a copy.
    chunk = sock.recv(65536)
    if not chunk:
        raise ConnectionError("Connection closed by server.")
    return chunk


def frozen(value: Any) -> Any:
    """Replies sliced from a bytearray (they took several reads), with bytes where it left bytearrays."""
    if type(value) is bytearray:
        return bytes(value)
    if type(value) is list:
        return [frozen(v) for v in value]
    return value
