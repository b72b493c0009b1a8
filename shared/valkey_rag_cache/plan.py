"""How a driver sends requests, written once for the sync and async drivers (`store.py`): no I/O here.

What differs between the twins is only *how* a command goes out (a call, or an awaited call). Everything
about *what* goes out is here: the commands of a script call (EVALSHA, SCRIPT LOAD, EVAL), a pipeline's
round after NOSCRIPT (load the scripts, or run them with EVAL where an ACL refuses SCRIPT LOAD), and which
node each call of a cluster fan-out goes to.

Example:
    >>> from valkey_rag_cache.ops.requests import Cmd
    >>> calls = [Cmd(("GET", "a")), Cmd(("GET", "b")), Cmd(("GET", "a"))]
    >>> [(node, [i for i, _ in items]) for node, items in by_node(calls, str.upper)]
    [('A', [0, 2]), ('B', [1])]
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from valkey.exceptions import NoScriptError

from .ops.requests import Call, Eval
from .scripts import Script

__all__ = [
    "PipelineRound",
    "by_node",
    "eval_command",
    "evalsha_command",
    "load_command",
    "raise_first",
    "route_key",
]


def evalsha_command(op: Eval) -> tuple[Any, ...]:
    """The script by its digest: what every call sends first."""
    return ("EVALSHA", op.script.sha, len(op.keys), *op.keys, *op.args)


def load_command(op: Eval) -> tuple[Any, ...]:
    """After NOSCRIPT (a restarted or flushed server): load it, then EVALSHA again."""
    return ("SCRIPT", "LOAD", op.script.source)


def eval_command(op: Eval) -> tuple[Any, ...]:
    """Where an ACL refuses SCRIPT LOAD: EVAL runs the script (and caches it)."""
    return ("EVAL", op.script.source, len(op.keys), *op.keys, *op.args)


def raise_first(replies: list[Any]) -> list[Any]:
    """A pipeline's replies, or its first error raised (after every reply was read: the line is in step).

    >>> raise_first([b"a", None])
    [b'a', None]
    """
    for reply in replies:
        if isinstance(reply, BaseException):
            raise reply
    return replies


def route_key(call: Call) -> Any:
    """The key that routes a call in a cluster: a script's first key, a command's first argument."""
    return call.keys[0] if isinstance(call, Eval) else call.args[1]


def by_node(calls: list[Call], node_of: Callable[[Any], Any]) -> list[tuple[Any, list[tuple[int, Call]]]]:
    """The calls grouped by the node that owns their key (in first-seen order), with their positions."""
    groups: dict[Hashable, tuple[Any, list[tuple[int, Call]]]] = {}
    for i, call in enumerate(calls):
        node = node_of(route_key(call))
        name = getattr(node, "name", node)
        groups.setdefault(name, (node, []))[1].append((i, call))
    return list(groups.values())


class PipelineRound:
    """One pipeline of calls; the calls that met NOSCRIPT are sent again, once, after loading their scripts.

    A driver queues `commands()` into a pipeline, executes it without raising, and hands the replies to
    `reload`: it keeps them, and returns the scripts to load (``SCRIPT LOAD``) before sending `commands()`
    again, which then holds only the calls that met NOSCRIPT (the others ran and must not run twice: a
    counter would count twice). After `refused_load()` (an ACL without SCRIPT LOAD) they go as EVAL.
    `replies` holds the final reply of every call, in order.
    """

    __slots__ = ("calls", "replies", "sent", "todo", "use_eval")

    def __init__(self, calls: list[Call]) -> None:
        self.calls = calls
        self.replies: list[Any] = [None] * len(calls)
        self.todo = list(range(len(calls)))
        self.use_eval = False
        self.sent = 0

    def commands(self) -> list[tuple[Any, ...]]:
        self.sent += 1
        make = eval_command if self.use_eval else evalsha_command
        out = []
        for i in self.todo:
            call = self.calls[i]
            out.append(make(call) if isinstance(call, Eval) else call.args)
        return out

    def reload(self, replies: list[Any]) -> set[Script]:
        missing = []
        for i, reply in zip(self.todo, replies, strict=True):
            if self.sent == 1 and isinstance(reply, NoScriptError):
                missing.append(i)
            else:
                self.replies[i] = reply
        self.todo = missing
        return {call.script for call in (self.calls[i] for i in missing) if isinstance(call, Eval)}

    def refused_load(self) -> None:
        self.use_eval = True
