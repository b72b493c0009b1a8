"""`resp.py`: the direct line's RESP2 reader gives what valkey-py's parser gives, whatever the chunking."""

from __future__ import annotations

import socket
import threading

import pytest
from valkey._parsers import _RESP2Parser
from valkey.exceptions import NoScriptError, ResponseError

from valkey_rag_cache.resp import Incomplete, pack, parse, read_replies

pytestmark = pytest.mark.fake

REPLIES = (
    b"$5\r\nhello\r\n"
    b"$0\r\n\r\n"
    b"$-1\r\n"
    b":-42\r\n"
    b"+OK\r\n"
    b"*3\r\n:1\r\n*2\r\n$1\r\na\r\n$-1\r\n*0\r\n"
    b"*-1\r\n"
    b"-NOSCRIPT No matching script. Please use EVAL.\r\n"
    b"*2\r\n$4\r\nbody\r\n-ERR inside an array\r\n"
    b"$13\r\nwith\r\nCRLF\r\n!\r\n"
    b"*3\r\n$6\r\na\r\nb\r\n\r\n$-1\r\n$0\r\n\r\n"
)
EXPECTED = [
    b"hello",
    b"",
    None,
    -42,
    b"OK",
    [1, [b"a", None], []],
    None,
    NoScriptError,
    [b"body", ResponseError],
    b"with\r\nCRLF\r\n!",
    [b"a\r\nb\r\n", None, b""],
]


def same(got: object, want: object) -> bool:
    if isinstance(want, type):
        return type(got) is want
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(map(same, got, want))
    return got == want


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, len(REPLIES)])
def test_replies_read_in_any_chunking(chunk: int) -> None:
    ours, theirs = socket.socketpair()

    def feed() -> None:
        for i in range(0, len(REPLIES), chunk):
            theirs.sendall(REPLIES[i : i + chunk])

    writer = threading.Thread(target=feed)
    writer.start()
    got = read_replies(ours, len(EXPECTED))
    writer.join()
    assert all(map(same, got, EXPECTED)), got
    ours.close()
    theirs.close()


def test_the_reader_agrees_with_valkey_py() -> None:
    # The same bytes through valkey-py's own RESP2 parser: the same values (errors as their classes).
    ours, theirs = socket.socketpair()
    theirs.sendall(REPLIES)

    class Conn:
        _sock = ours
        socket_timeout = 1.0
        encoder = None

    parser = _RESP2Parser(socket_read_size=65536)
    parser.on_connect(Conn())
    parser.encoder = None
    for want in EXPECTED:
        try:
            reply = parser.read_response(disable_decoding=True)
        except ResponseError as exc:
            reply = exc
        assert same(reply, want)
    ours.close()
    theirs.close()


def test_a_cut_reply_asks_for_more_and_a_closed_socket_is_a_connection_error() -> None:
    with pytest.raises(Incomplete):
        parse(b"$5\r\nhel", 0)
    with pytest.raises(Incomplete):
        parse(b"*2\r\n:1\r\n", 0)
    ours, theirs = socket.socketpair()
    theirs.sendall(b"$5\r\nhel")
    theirs.close()
    from valkey.exceptions import ConnectionError

    with pytest.raises(ConnectionError):
        read_replies(ours, 1)


def test_pack_is_resp_arrays_of_bulk_strings() -> None:
    assert pack(("SET", b"k", 1), lambda a: str(a).encode()) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n1\r\n"


def test_errors_are_named_by_the_connections_parser() -> None:
    from valkey.cluster import ClusterParser
    from valkey.exceptions import AskError, MovedError

    moved, ask = b"-MOVED 3999 127.0.0.1:6381\r\n", b"-ASK 3999 127.0.0.1:6381\r\n"
    assert type(parse(moved, 0, ClusterParser.parse_error)[0]) is MovedError
    assert type(parse(ask, 0, ClusterParser.parse_error)[0]) is AskError
    assert type(parse(moved, 0)[0]) is ResponseError  # a standalone parser knows no redirections
