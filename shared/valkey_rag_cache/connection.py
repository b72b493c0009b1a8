"""Where the cache's Valkey comes from: a URL, `VALKEY_URL`, a ready-made client, or an embedded server.

Nothing here connects at construction; the first operation does.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import weakref
from collections.abc import Generator
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import valkey
import valkey.asyncio as avalkey
from valkey.asyncio.cluster import ValkeyCluster as AsyncValkeyCluster
from valkey.cluster import ValkeyCluster

from .embedded import embedded_allowed, embedded_url
from .errors import CacheError
from .glide_driver import is_glide_client, is_glide_cluster

__all__ = ["Connector", "check_url", "embedded_url", "forget_closed", "redact"]

log = logging.getLogger("valkey_rag_cache")

V = TypeVar("V")

_SCHEMES = ("valkey", "valkeys", "redis", "rediss", "unix")


def check_url(url: str, where: str = "url=") -> str:
    """Refuse, at configuration time, a URL that could never connect; the message never shows a password.

    >>> check_url("valkey://localhost:6379/0")
    'valkey://localhost:6379/0'
    >>> check_url("localhost:6379", "VALKEY_URL")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: VALKEY_URL is not a Valkey URL (no scheme: use valkey://host:port, ...): localhost:6379
    """
    from valkey.connection import parse_url

    if not isinstance(url, str):
        raise TypeError(f"{where} must be a string such as 'valkey://localhost:6379'")
    password = ""
    try:
        parts = urlsplit(url)
        password = parts.password or ""
        scheme = parts.scheme.lower()
        if scheme not in _SCHEMES or "://" not in url and scheme != "unix":
            known = "use valkey://host:port, valkeys://, redis://, rediss:// or unix:///path"
            raise ValueError(f"unknown scheme {scheme!r}: {known}" if "://" in url else f"no scheme: {known}")
        if scheme == "unix":
            if not parts.path:
                raise ValueError("a unix:// URL needs the socket's path, as in unix:///run/valkey.sock")
        else:
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
            db = parts.path.strip("/")
            if db and not db.isdigit():
                raise ValueError(f"the path names the database and must be a number, got {db!r}")
        parse_url(url)  # valkey-py's own checks (query arguments)
    except ValueError as exc:
        reason = str(exc).replace(password, "***") if password else str(exc)
        raise ValueError(f"{where} is not a Valkey URL ({reason}): {_shown(url)}") from None
    return url


def _shown(url: str) -> str:
    """The URL for an error message, with anything that may be a password masked."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(not shown: it does not parse)"
    if parts.scheme and parts.netloc:
        shown = redact(url)
    else:  # no scheme: "user:pw@host:port" parses as a path, so mask what precedes the '@'
        _, at, tail = url.rpartition("@")
        shown = f"***@{tail}" if at else url
    return re.sub(r"(?i)(password=)[^&]*", r"\1***", shown)


def redact(url: str) -> str:
    """The URL without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def _is_cluster_client(client: Any) -> bool:
    return isinstance(client, ValkeyCluster | AsyncValkeyCluster) or is_glide_cluster(client)


class Connector:
    """Makes the sync and async clients on first use and knows whether they talk to a cluster.

    Async clients are bound to an event loop, so one is made per running loop.
    """

    def __init__(
        self,
        url: str | None = None,
        client: Any = None,
        *,
        timeout: float = 0.5,
        cluster: bool | None = None,
        embedded: bool | None = None,
    ) -> None:
        self._url = url
        self._timeout = timeout
        self._sync: Any = None
        self._made_sync = client is None  # a client made from the URL (closed by `close`), not a given one
        self._async_given: Any = None
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self.cluster: bool | None = cluster
        self.glide = is_glide_client(client)  # Valkey GLIDE (asyncio only): run by glide_driver.py
        if client is not None:
            if isinstance(client, avalkey.Valkey | AsyncValkeyCluster) or self.glide:
                self._async_given = client
            elif isinstance(client, valkey.Valkey | ValkeyCluster):
                self._sync = client
            else:
                raise TypeError(
                    "client must be a valkey.Valkey, valkey.ValkeyCluster, valkey.asyncio.Valkey, "
                    "valkey.asyncio.ValkeyCluster, glide.GlideClient or glide.GlideClusterClient, got "
                    f"{type(client).__name__}"
                )
            self.cluster = _is_cluster_client(client)
        elif url is not None:
            check_url(url, "url=")
        elif os.environ.get("VALKEY_URL"):
            self._url = check_url(os.environ["VALKEY_URL"], "VALKEY_URL")
        elif not embedded_allowed(embedded):
            switch = "embedded=False" if embedded is not None else "VALKEY_RAG_CACHE_EMBEDDED=0"
            raise ValueError(
                f"no Valkey configured: set VALKEY_URL or pass url=... (the embedded fallback is off: "
                f"{switch})"
            )

    @property
    def url(self) -> str:
        if self._url is None:
            self._url = embedded_url()
        return self._url

    def _options(self) -> dict[str, Any]:
        return {"socket_timeout": self._timeout, "socket_connect_timeout": self._timeout}

    # -- sync ------------------------------------------------------------------------------------------

    @property
    def has_sync(self) -> bool:
        """Can `sync_client()` give a client (one was given, or one can be made from the URL)?"""
        return self._sync is not None or self._async_given is None

    def sync_client(self) -> Any:
        if self._sync is not None:
            return self._sync
        if self._async_given is not None:
            raise CacheError(
                "this cache was given an asyncio client: use the async methods (alookup, aupdate, ...) or "
                "pass a sync valkey client too"
            )
        with self._lock:
            if self._sync is None:
                url = self.url
                if self.cluster is None:
                    probe = valkey.Valkey.from_url(url, **self._options())
                    try:
                        self.cluster = _drive_probe(probe)
                    finally:
                        probe.close()
                if self.cluster:
                    self._sync = ValkeyCluster.from_url(url, **self._options())
                else:
                    self._sync = valkey.Valkey.from_url(url, **self._options())
        return self._sync

    def close(self) -> None:
        """Let go of the sync client this connector made (a given client is the caller's to close): its idle
        connections are closed now, one in use by another thread's call when that call is done with it (the
        client goes with its last user); the next call makes a new client."""
        with self._lock:
            made, self._sync = (self._sync, None) if self._made_sync else (None, self._sync)
        if made is not None:
            made.connection_pool.disconnect(inuse_connections=False)

    # -- async -----------------------------------------------------------------------------------------

    def current_async(self) -> Any:
        """The asyncio client calls on the running loop use now (None: none made yet, or a sync client)."""
        if self._async_given is not None:
            return self._async_given
        return self._async.get(asyncio.get_running_loop())

    async def aclose(self) -> None:
        """Let go of the client this connector made for the running event loop (a given one is the
        caller's): its idle connections are closed now, one another task is using when it is done."""
        loop = asyncio.get_running_loop()
        made = self._async.get(loop)
        forget_closed(self._async, drop=loop)
        if made is not None:
            await made.connection_pool.disconnect(inuse_connections=False)

    async def async_client(self) -> Any:
        if self._async_given is not None:
            return self._async_given
        if self._sync is not None and self._url is None:
            return None  # only a sync client was given: the caller falls back to a thread
        loop = asyncio.get_running_loop()
        client = self._async.get(loop)
        if client is None:
            url = await asyncio.to_thread(lambda: self.url)
            if self.cluster is None:
                probe = avalkey.Valkey.from_url(url, **self._options())
                try:
                    self.cluster = await _adrive_probe(probe)
                finally:
                    await probe.aclose()
            if self.cluster:
                client = AsyncValkeyCluster.from_url(url, **self._options())
            else:
                client = avalkey.Valkey.from_url(url, **self._options())
            # Concurrent first calls of one loop each made one while they waited: all use the first stored.
            forget_closed(self._async, keep=(loop, client))
            client = self._async.get(loop, client)
        return client


# The maps by event loop are shared by every thread's loop: a thread pruning one while another adds its own
# entry would see the map change under it (or both pop the same entry).
_per_loop_lock = threading.Lock()


def forget_closed(
    per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, V],
    keep: tuple[asyncio.AbstractEventLoop, V] | None = None,
    drop: asyncio.AbstractEventLoop | None = None,
) -> list[V]:
    """Drop the entries of event loops that closed (and `drop`'s), set `keep` (a loop and its value) unless
    that loop has one, and return what was dropped: a client (or its line's reader task) refers back to its
    loop, so the weak key alone never lets a finished ``asyncio.run``'s loop go (~25 KB each, measured)."""
    with _per_loop_lock:
        gone = [loop for loop in list(per_loop) if loop.is_closed() or loop is drop]
        dropped = [per_loop.pop(loop) for loop in gone]
        if keep is not None:
            per_loop.setdefault(*keep)  # (a value already there stays: the caller reads it back)
    return dropped


# -- is it a cluster? ------------------------------------------------------------------------------------
# HELLO (without a protocol version: the connection stays RESP2) reports the server's mode and is allowed to
# the users managed services hand out (`+@all -@dangerous`, which refuses INFO). Where HELLO is refused or
# unknown, CLUSTER INFO answers (a standalone server says cluster support is disabled), then INFO.

Probe = Generator[tuple[str, ...], Any, bool]


def cluster_probe() -> Probe:
    """Sans-IO: yields commands, receives each reply or the exception it raised; returns whether a cluster."""
    reply = yield ("HELLO",)
    if not isinstance(reply, Exception):
        mode = _hello_mode(reply)
        if mode == "sentinel":
            raise CacheError("this URL points at a Sentinel, not at a Valkey server or cluster")
        if mode in ("standalone", "cluster"):
            return mode == "cluster"
    reply = yield ("CLUSTER", "INFO")
    if not isinstance(reply, Exception):
        return True
    if "cluster support disabled" in str(reply).lower():
        return False
    reply = yield ("INFO", "cluster")
    if not isinstance(reply, Exception):
        return _cluster_enabled(reply)
    raise CacheError(
        "could not tell whether the server is a cluster: HELLO, CLUSTER INFO and INFO were refused "
        f"({type(reply).__name__}: {reply}); pass cluster=True or cluster=False"
    )


def is_connection_error(exc: BaseException) -> bool:
    return isinstance(exc, valkey.ConnectionError | valkey.TimeoutError | OSError)


def _hello_mode(reply: Any) -> str | None:
    if isinstance(reply, list | tuple):  # RESP2: a flat list of names and values
        reply = dict(zip(reply[::2], reply[1::2], strict=False))
    if not isinstance(reply, dict):
        return None
    for name, value in reply.items():
        if _text(name) == "mode":
            return _text(value)
    return None


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _drive_probe(client: Any) -> bool:
    probe = cluster_probe()
    reply: Any = None
    try:
        while True:
            cmd = probe.send(reply)
            try:
                reply = client.execute_command(*cmd)
            except valkey.ValkeyError as exc:
                if is_connection_error(exc):
                    raise
                reply = exc
    except StopIteration as done:
        return bool(done.value)


async def _adrive_probe(client: Any) -> bool:
    probe = cluster_probe()
    reply: Any = None
    try:
        while True:
            cmd = probe.send(reply)
            try:
                reply = await client.execute_command(*cmd)
            except valkey.ValkeyError as exc:
                if is_connection_error(exc):
                    raise
                reply = exc
    except StopIteration as done:
        return bool(done.value)


def _cluster_enabled(info: dict[str, Any]) -> bool:
    return str(info.get("cluster_enabled", "0")) == "1"
