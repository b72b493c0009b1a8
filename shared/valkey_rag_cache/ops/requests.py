"""The sans-IO vocabulary: what an operation asks a driver to send, and how its replies read.

An operation is a `Flow[T]`: a generator that yields these requests, is sent each reply (or has the error
thrown into it) and returns a `T`. The drivers in `store.py` (and `glide_driver.py`) send them.

Example:
    >>> from valkey_rag_cache.ops.requests import Cmd, Flow
    >>> def ping() -> Flow[bool]:
    ...     reply = yield Cmd(("PING",))
    ...     return reply in (b"PONG", "PONG", True)
    >>> flow = ping(); next(flow)
    Cmd(args=('PING',))
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeAlias, TypeVar

from ..scripts import Script

__all__ = ["Call", "Cmd", "Eval", "FanOut", "Flow", "NodeCmd", "Op", "Primaries", "adrive"]

T = TypeVar("T")

# Requests are values: never changed once made. They are not `frozen` only because a frozen dataclass's
# __init__ sets each field through object.__setattr__, which costs the hit path (one Eval per lookup).


@dataclass(slots=True)
class Eval:
    """Run a script; every key shares one hash slot (the first one, a str, routes it in a cluster)."""

    script: Script
    keys: list[str | bytes]
    args: list[str | int | float | bytes]


@dataclass(slots=True)
class Cmd:
    """One command, routed by its first key (``args[1]``) in a cluster.

    `fixed`: the same arguments on every call (a hot path's constant command), so a driver may pack it once.
    """

    args: tuple[Any, ...]
    fixed: bool = field(default=False, repr=False, compare=False)  # how to send it, not what it is


Call: TypeAlias = Eval | Cmd


@dataclass(slots=True)
class FanOut:
    """Independent calls, sent as one pipeline per shard; the replies come back in order.

    `raw`: the operation reads the replies as the server sends them (no client-side conversion: SISMEMBER
    may answer 1 or True, HINCRBY an int either way), so a driver may send them over its direct line.
    """

    calls: list[Call]
    raw: bool = False


@dataclass(frozen=True, slots=True)
class Primaries:
    """The primaries to scan: opaque handles (one `None` on a standalone server)."""


@dataclass(slots=True)
class NodeCmd:
    """One command on one primary (a handle from `Primaries`), or on the primary that owns `key`."""

    args: tuple[Any, ...]
    node: Any = None
    key: str | None = None


Op: TypeAlias = Eval | Cmd | FanOut | Primaries | NodeCmd
# A reply is whatever the client answers (bytes, str, int, lists of them): read with the helpers below.
Flow: TypeAlias = Generator[Op, Any, T]


async def adrive(
    flow: Flow[T],
    send: Callable[[Any, Op], Awaitable[Any]],
    client: Any,
    translate: Callable[[Exception], BaseException] | None = None,
) -> T:
    """Run `flow` to its result, awaiting `send(client, op)` for each request (the async drivers' loop).

    An error is thrown into the flow (as `translate` makes it, for a client whose errors differ), which may
    handle it (an INFO refused by an ACL) or let it end the flow.
    """
    try:
        op = next(flow)
        while True:
            try:
                reply = await send(client, op)
            except Exception as exc:
                op = flow.throw(exc if translate is None else translate(exc))
            else:
                op = flow.send(reply)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]  # a generator's return is untyped


def text(value: Any) -> str:
    """A reply as text (a client may answer bytes or str)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def utf8(value: Any) -> str | None:
    """A reply as text, or None when it is not UTF-8 (data no writer of ours made)."""
    if isinstance(value, str):
        return value
    try:
        return bytes(value).decode()
    except (UnicodeDecodeError, TypeError):
        return None


def integer(value: Any) -> int | None:
    """A reply as an integer as our counters hold them, or None."""
    txt = utf8(value)
    if txt is None or not txt.lstrip("-").isdigit() or not txt.isascii() or len(txt) > 20:
        return None
    return int(txt)


def wrong_type(exc: BaseException) -> bool:
    return str(exc).startswith("WRONGTYPE")


def data_error(exc: BaseException) -> bool:
    """An error about the data of a key (wrong type, a counter that is not one), not about the backend."""
    msg = str(exc)
    return msg.startswith("WRONGTYPE") or ("not an integer" in msg) or ("overflow" in msg)
