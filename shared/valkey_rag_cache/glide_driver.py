"""The asyncio driver over Valkey GLIDE (extra ``glide``): the same operations on another client.

It runs the sans-IO operations of `ops` exactly as `store.AsyncDriver` does over valkey.asyncio, on a
ready-made ``glide.GlideClient`` or ``glide.GlideClusterClient``. GLIDE's replies are already what the
operations read (bytes, ints, lists; a dict for HGETALL); the few that differ are normalised here (INFO text,
SCAN cursors), and GLIDE's errors are turned back into the valkey-py exceptions a server reply or a network
failure raises there, so `health.py` sorts them the same way: the backend down or slow is a miss, a failing
script is a bug of ours. Nothing here imports ``glide`` until a GLIDE client is in use.

Example:
    >>> from glide import GlideClient, GlideClientConfiguration, NodeAddress  # doctest: +SKIP
    >>> config = GlideClientConfiguration([NodeAddress("localhost", 6379)])  # doctest: +SKIP
    >>> client = await GlideClient.create(config)  # doctest: +SKIP
    >>> cache = AnswerCache(client=client)  # doctest: +SKIP
    >>> await cache.alookup(cache.key("qa", "q")) is None  # doctest: +SKIP
    True
"""

from __future__ import annotations

import re
import sys
from typing import Any, TypeVar

from valkey import exceptions as vex
from valkey._parsers.base import BaseParser
from valkey._parsers.helpers import parse_info

from .ops.requests import Call, Cmd, Eval, FanOut, Flow, NodeCmd, Primaries, adrive
from .plan import PipelineRound, raise_first
from .scripts import Script

__all__ = ["GlideDriver", "is_glide_client", "is_glide_cluster", "as_valkey_error", "is_glide_error"]

R = TypeVar("R")


def _glide() -> Any:
    # A GLIDE client exists only if the user imported glide: never import it on our own.
    return sys.modules.get("glide")


def is_glide_client(client: Any) -> bool:
    glide = _glide()
    return glide is not None and isinstance(client, glide.GlideClient | glide.GlideClusterClient)


def is_glide_cluster(client: Any) -> bool:
    glide = _glide()
    return glide is not None and isinstance(client, glide.GlideClusterClient)


def is_glide_error(exc: BaseException) -> bool:
    glide = _glide()
    return glide is not None and isinstance(exc, glide.GlideError)


# GLIDE reports a server error reply as "An error was signalled by the server: - <Kind>: <detail>" for the
# kinds its core knows, and as "<CODE>: <detail>" for the others; these are the codes the kinds stand for.
_SERVER = "An error was signalled by the server: - "
_KINDS = {
    "ResponseError": "ERR",
    "ExecAbortError": "EXECABORT",
    "BusyLoadingError": "LOADING",
    "NoScriptError": "NOSCRIPT",
    "Moved": "MOVED",
    "Ask": "ASK",
    "TryAgain": "TRYAGAIN",
    "ClusterDown": "CLUSTERDOWN",
    "CrossSlot": "CROSSSLOT",
    "MasterDown": "MASTERDOWN",
    "ReadOnly": "READONLY",
    "NotBusy": "NOTBUSY",
}
_CODE = re.compile(r"([A-Z][A-Z_]*): (.*)", re.DOTALL)


def as_valkey_error(exc: BaseException) -> BaseException:
    """The valkey-py exception the same failure raises there (GLIDE errors only; others pass through).

    >>> import glide
    >>> type(as_valkey_error(glide.RequestError(_SERVER + "NoScriptError: No matching script."))).__name__
    'NoScriptError'
    >>> str(as_valkey_error(glide.RequestError("OOM: command not allowed")))
    'command not allowed'
    """
    glide = _glide()
    if glide is None or not isinstance(exc, glide.GlideError):
        return exc
    text = str(exc)
    out: BaseException
    if isinstance(exc, glide.TimeoutError):
        out = vex.TimeoutError(text)
    elif isinstance(exc, glide.ConnectionError | glide.ClosingError):
        out = vex.ConnectionError(text)
    elif isinstance(exc, glide.RequestError) and not isinstance(exc, glide.ConfigurationError):
        if text.startswith(_SERVER):
            kind, _, detail = text[len(_SERVER) :].partition(": ")
            code = _KINDS.get(kind)
            # valkey-py's own parser picks the class (NoScriptError, ReadOnlyError, OutOfMemoryError...).
            out = BaseParser.parse_error(f"{code} {detail}") if code else vex.ResponseError(text)
        elif match := _CODE.fullmatch(text):
            out = BaseParser.parse_error(f"{match[1]} {match[2]}")
        else:  # a request GLIDE itself could not carry out (no connection to route it to...)
            out = vex.ConnectionError(text)
    else:  # ConfigurationError and the like: GLIDE was handed something it refuses
        out = vex.ValkeyError(text)
    out.__cause__ = exc
    return out


def _arg(value: Any) -> Any:
    # GLIDE takes str or bytes only; valkey-py would have sent numbers as their decimal text too.
    return value if isinstance(value, str | bytes) else str(value)


def _key_text(key: Any) -> str:
    return key.decode("utf-8", "surrogateescape") if isinstance(key, bytes) else str(key)


class GlideDriver:
    """Runs an operation over a ready-made GLIDE client: one command, or one batch, per yielded op."""

    def __init__(self, connector: Any) -> None:
        self.connector = connector
        self._scripts: dict[str, Any] = {}  # our sha -> glide.Script (GLIDE forgets a script it collects)

    async def run(self, flow: Flow[R]) -> R:
        client = await self.connector.async_client()
        return await adrive(flow, self._do, client, as_valkey_error)

    def _script(self, script: Script) -> Any:
        found = self._scripts.get(script.sha)
        if found is None:
            found = self._scripts[script.sha] = _glide().Script(script.source)
        return found

    async def _do(self, client: Any, op: Any) -> Any:
        if isinstance(op, Eval):
            # GLIDE sends EVALSHA, routed by the first key in a cluster, and loads the script on NOSCRIPT.
            return await client.invoke_script(
                self._script(op.script), keys=op.keys, args=[_arg(a) for a in op.args]
            )
        if isinstance(op, Cmd):
            args = [_arg(a) for a in op.args]
            if self.connector.cluster and len(args) > 1:
                return await client.custom_command(args, route=self._slot(args[1]))
            return await client.custom_command(args)
        if isinstance(op, FanOut):
            return await self._fanout(client, op.calls)
        if isinstance(op, Primaries):
            return await self._primaries(client) if self.connector.cluster else [None]
        if isinstance(op, NodeCmd):
            return await self._node_cmd(client, op)
        raise TypeError(f"unknown operation {op!r}")

    def _slot(self, key: Any) -> Any:
        glide = _glide()
        return glide.SlotKeyRoute(glide.SlotType.PRIMARY, _key_text(key))

    async def _primaries(self, client: Any) -> list[tuple[str, int]]:
        glide = _glide()
        nodes = await client.custom_command(["CLUSTER", "NODES"], route=glide.RandomNode())
        out = []
        for line in _key_text(nodes).splitlines():
            parts = line.split()
            if len(parts) < 3:
                continue
            flags = parts[2].split(",")
            if "master" not in flags or "fail" in flags or "noaddr" in flags:
                continue
            host, _, port = parts[1].split("@", 1)[0].rpartition(":")
            if host and port.isdigit():
                out.append((host, int(port)))
        return sorted(out)

    async def _node_cmd(self, client: Any, op: NodeCmd) -> Any:
        args = [_arg(a) for a in op.args]
        if not self.connector.cluster:
            reply = await client.custom_command(args)
        else:
            if op.node is not None:
                route = _glide().ByAddressRoute(op.node[0], op.node[1])
            else:
                route = self._slot(op.key)
            reply = await client.custom_command(args, route=route)
        if args and str(args[0]).upper() == "INFO":
            return parse_info(reply)  # a dict, as valkey-py parses it
        if isinstance(reply, list) and len(reply) == 2:  # SCAN: (cursor, keys)
            return reply[0], reply[1]
        return reply

    async def _fanout(self, client: Any, calls: list[Call]) -> list[Any]:
        """One non-atomic batch: GLIDE splits it per shard in a cluster, replies come back in order."""
        if not calls:
            return []
        glide = _glide()
        round_ = PipelineRound(calls)  # what to send again after NOSCRIPT: `plan.py`, as for valkey-py
        while True:
            batch = glide.ClusterBatch(False) if self.connector.cluster else glide.Batch(False)
            for command in round_.commands():
                batch.custom_command([_arg(a) for a in command])
            replies = await client.exec(batch, raise_on_error=False)
            scripts = round_.reload([as_valkey_error(r) if isinstance(r, Exception) else r for r in replies])
            if not scripts:
                break
            # Load what the server lacked (on every primary of a cluster), then resend only those calls.
            for script in scripts:
                load = ["SCRIPT", "LOAD", script.source]
                if self.connector.cluster:
                    await client.custom_command(load, route=glide.AllPrimaries())
                else:
                    await client.custom_command(load)
        return raise_first(round_.replies)
