"""Valkey GLIDE as the client: what its driver must get right beyond the contract.

The core's contract itself runs over GLIDE as the ``glide`` backends of test_core_contract.py; the adapters'
async paths over GLIDE are in tests/langchain and tests/llamaindex.
"""

from __future__ import annotations

import logging
from typing import Any

import glide
import pytest
import valkey
from valkey.exceptions import NoScriptError, ResponseError

from glide_support import glide_client
from servers import start_standalone
from valkey_rag_cache import AnswerCache, CacheError, InvalidationError
from valkey_rag_cache.glide_driver import GlideDriver, as_valkey_error
from valkey_rag_cache.health import is_backend_error
from valkey_rag_cache.ops.requests import Cmd, Eval, FanOut, NodeCmd, Primaries
from valkey_rag_cache.scripts import Script

pytestmark = pytest.mark.glide


def _raw(request: pytest.FixtureRequest, cluster: bool) -> Any:
    if cluster:
        return valkey.ValkeyCluster.from_url(request.getfixturevalue("cluster_url"))
    return valkey.Valkey.from_url(request.getfixturevalue("standalone_url"))


@pytest.fixture
def client(glide_async_client: Any) -> Any:
    return glide_async_client


# -- accepted, detected, asyncio only ----


async def test_a_glide_client_is_accepted_and_its_kind_detected(client: Any, prefix: str) -> None:
    cache = AnswerCache(client=client, prefix=prefix)
    assert cache.connector.glide and cache.connector.cluster is client.is_cluster
    key = cache.key("qa", "q")
    assert await cache.alookup(key) is None
    assert await cache.astore(key, {"a": "é ✓"}, ["doc"])
    assert (await cache.alookup(key)).value == {"a": "é ✓"}  # type: ignore[union-attr]
    assert (await cache.adoctor()).cluster is client.is_cluster


async def test_sync_methods_on_a_glide_only_cache_raise_a_clear_error(client: Any, prefix: str) -> None:
    cache = AnswerCache(client=client, prefix=prefix)
    with pytest.raises(CacheError, match="asyncio client"):
        cache.invalidate_source("doc")
    with pytest.raises(CacheError, match="asyncio client"):
        cache.doctor()


# -- the driver: replies as the operations read them ----


async def test_replies_are_normalised_to_what_the_operations_read(
    client: Any, prefix: str, request: pytest.FixtureRequest
) -> None:
    cache = AnswerCache(client=client, prefix=prefix)
    driver = GlideDriver(cache.connector)
    key = f"{prefix}:{{g}}:h"

    def flow() -> Any:
        assert (yield Cmd(("HSET", key, "n", 3))) == 1  # ints go out as their decimal text
        assert (yield Cmd(("HGETALL", key))) == {b"n": b"3"}
        assert (yield Cmd(("SADD", key + "s", "a", "b"))) == 2
        assert sorted((yield Cmd(("SMEMBERS", key + "s")))) == [b"a", b"b"]
        echo = Script("echo", "return {1, KEYS[1], ARGV[1], ARGV[2]}")
        assert (yield Eval(echo, [key], [b"\xff\x00", 7])) == [1, key.encode(), b"\xff\x00", b"7"]
        replies = yield FanOut(
            [Cmd(("HINCRBY", key, "n", 1)), Eval(echo, [key + "x"], ["a", "b"]), Cmd(("TTL", key))]
        )
        assert replies == [4, [1, (key + "x").encode(), b"a", b"b"], -1]
        nodes = yield Primaries()
        assert len(nodes) == (3 if client.is_cluster else 1)
        found = []
        for node in nodes:
            cursor: Any = 0
            while True:
                cursor, keys = yield NodeCmd(("SCAN", cursor, "MATCH", f"{prefix}:*", "COUNT", 2), node=node)
                found += keys
                if int(cursor) == 0:
                    break
            info = yield NodeCmd(("INFO", "memory"), node=node)
            assert isinstance(info, dict) and info["used_memory"] > 0  # parsed as valkey-py parses it
        assert sorted(found) == sorted([key.encode(), (key + "s").encode()])
        cursor, mine = 0, []
        while True:  # on the primary that owns the key
            cursor, keys = yield NodeCmd(("SCAN", cursor, "MATCH", key, "COUNT", 1000), key=key)
            mine += keys
            if int(cursor) == 0:
                return mine == [key.encode()]

    assert await driver.run(flow())


async def test_scripts_the_server_lost_are_loaded_again(
    client: Any, prefix: str, request: pytest.FixtureRequest
) -> None:
    """SCRIPT FLUSH (a restart, a failover): single calls and fan-outs (pipelines per shard) recover."""
    raw = _raw(request, client.is_cluster)
    cache = AnswerCache(client=client, prefix=prefix, namespace="docs")
    keys = [cache.key("qa", i) for i in range(6)]
    for k in keys:
        assert await cache.astore(k, "x", ["doc"])
    raw.script_flush()  # every primary in a cluster
    assert await cache.ainvalidate_source("doc") == 6  # a fan-out of scripts first
    raw.script_flush()
    assert await cache.alookup(keys[0]) is None  # a single script
    assert await cache.astore(keys[0], "y", ["doc"])
    raw.script_flush()
    await cache.ainvalidate_namespace()
    raw.script_flush()
    assert await cache.apurge() >= 1  # a fan-out of sweeps
    assert cache.health.errors == 0
    # A fan-out that also holds plain commands runs those once, even when its scripts had to be reloaded.
    raw.script_flush()
    driver = GlideDriver(cache.connector)
    counter = f"{prefix}:{{docs}}:counter"
    sweep = Script("one", "return 1")

    def flow() -> Any:
        return (yield FanOut([Cmd(("INCR", counter)), Eval(sweep, [counter], [])]))

    assert await driver.run(flow()) == [1, 1]
    assert raw.get(counter) == b"1"


# -- errors: the backend down or slow is a miss; a failing script is a bug, logged, never raised ----


def test_glide_errors_are_sorted_like_their_valkey_py_twins() -> None:
    server = "An error was signalled by the server: - "
    assert isinstance(
        as_valkey_error(glide.RequestError(server + "NoScriptError: No matching script.")), NoScriptError
    )
    backend = [
        glide.TimeoutError("timed out"),
        glide.ConnectionError("Connection refused"),
        glide.ClosingError("Unable to execute requests; the client is closed."),
        glide.RequestError("OOM: command not allowed when used memory > 'maxmemory'."),
        glide.RequestError(server + "ReadOnly: You can't write against a read only replica."),
        glide.RequestError(server + "ClusterDown: The cluster is down"),
        glide.RequestError(server + "BusyLoadingError: Valkey is loading the dataset in memory"),
        glide.RequestError("NOAUTH: Authentication required."),
        glide.RequestError("BUSY: Valkey is busy running a script."),
    ]
    for exc in backend:
        assert is_backend_error(exc), exc
        assert isinstance(as_valkey_error(exc), valkey.ValkeyError)
    bugs = [
        glide.RequestError(server + "ResponseError: user_script:1: attempt to index a nil value script: ab"),
        glide.RequestError("WRONGTYPE: Operation against a key holding the wrong kind of value script: ab"),
        glide.RequestError(server + "NoScriptError: No matching script."),
    ]
    for exc in bugs:
        assert not is_backend_error(exc), exc
        assert isinstance(as_valkey_error(exc), ResponseError)
    assert as_valkey_error(glide.RequestError("OOM: x")).__cause__ is not None  # GLIDE's error is kept


async def test_a_script_error_surfaces_as_valkey_pys_response_error(client: Any, prefix: str) -> None:
    driver = GlideDriver(AnswerCache(client=client, prefix=prefix).connector)
    broken = Script("broken", "return redis.call('HGET', KEYS[1], 'f')")
    key = f"{prefix}:{{g}}:s"
    await client.custom_command(["SET", key, "a string"])

    def flow() -> Any:
        return (yield Eval(broken, [key], []))

    with pytest.raises(ResponseError, match="WRONGTYPE") as info:
        await driver.run(flow())
    assert not is_backend_error(info.value)


async def test_a_backend_that_goes_away_is_a_miss_with_one_warning(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = start_standalone()
    client = await glide_client(server.port, False, timeout_ms=300)
    try:
        cache = AnswerCache(client=client, prefix=prefix, retry_after=0)
        key = cache.key("qa", 1)
        assert await cache.astore(key, "x", ["doc"])
        server.stop()
        with caplog.at_level(logging.WARNING, logger="valkey_rag_cache"):
            assert await cache.alookup(key) is None
            assert await cache.astore(key, "y", ["doc"]) is False
        assert cache.health.errors >= 1 and cache.health.dropped_writes == 1
        assert [r for r in caplog.records if "unavailable" in r.getMessage()]
        with pytest.raises(InvalidationError):
            await cache.ainvalidate_source("doc")
    finally:
        server.stop()
        await client.close()
    closed = AnswerCache(client=client, prefix=prefix)  # a closed client: ClosingError
    assert await closed.alookup(key) is None
    assert closed.health.errors == 1


async def test_a_stalled_backend_times_out_into_a_miss(prefix: str) -> None:
    server = start_standalone()
    client = await glide_client(server.port, False, timeout_ms=200)
    try:
        cache = AnswerCache(client=client, prefix=prefix)
        key = cache.key("qa", 1)
        assert await cache.astore(key, "x")
        valkey.Valkey(port=server.port).execute_command("CLIENT", "PAUSE", 1500, "ALL")
        assert await cache.alookup(key) is None
        assert cache.health.errors == 1
    finally:
        await client.close()
        server.stop()
