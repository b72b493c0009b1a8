"""Restricted servers: the ACL users managed services hand out, and users confined to one tenant's keys.

Every test creates real ACL users on the real standalone server and on every node of the real cluster, and
checks the server's ACL LOG: a refused command or key shows up there even when the cache made it a miss.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import valkey
from valkey.exceptions import NoPermissionError, ResponseError

from servers import Cluster, Server, free_port
from valkey_rag_cache import AnswerCache
from valkey_rag_cache.connection import cluster_probe
from valkey_rag_cache.errors import CacheError

PASSWORD = "tenant-pw"

REAL = [
    pytest.param("standalone", marks=pytest.mark.standalone),
    pytest.param("cluster", marks=pytest.mark.cluster),
]


class Acl:
    """Creates ACL users on every node of one backend and reads what the nodes refused them."""

    def __init__(self, nodes: list[int], prefix: str) -> None:
        self.admins = [valkey.Valkey(port=p) for p in nodes]
        self.port = nodes[0]
        self.prefix = prefix
        self.users: list[str] = []

    def user(self, name: str, *rules: str) -> str:
        """A user with these rules on every node; returns its URL."""
        name = f"{self.prefix}-{name}"
        for admin in self.admins:
            admin.acl_setuser(name, reset=True, enabled=True, passwords=[f"+{PASSWORD}"])
            admin.execute_command("ACL", "SETUSER", name, *rules)
        self.users.append(name)
        return f"valkey://{name}:{PASSWORD}@127.0.0.1:{self.port}"

    def refused(self, name: str) -> list[tuple[str, str]]:
        """(reason, object) of every command or key refused to the user, on any node."""
        name = f"{self.prefix}-{name}"
        out = []
        for admin in self.admins:
            for entry in admin.acl_log(count=1000):
                if entry.get("username") == name:
                    out.append((str(entry.get("reason")), str(entry.get("object"))))
        return out

    def delete(self, key: str) -> None:
        """Delete a key wherever it lives (as an eviction would)."""
        for admin in self.admins:
            with contextlib.suppress(ResponseError):  # MOVED: another node owns it
                admin.delete(key)

    def close(self) -> None:
        for admin in self.admins:
            for name in self.users:
                admin.acl_deluser(name)
            admin.close()


@pytest.fixture(params=REAL)
def acl(request: pytest.FixtureRequest, prefix: str) -> Iterator[Acl]:
    if request.param == "standalone":
        server: Server = request.getfixturevalue("standalone_server")
        ports = [server.port]
    else:
        cluster: Cluster = request.getfixturevalue("valkey_cluster")
        ports = [n.port for n in cluster.nodes]
    acl = Acl(ports, prefix)
    acl.cluster = request.param == "cluster"  # type: ignore[attr-defined]
    yield acl
    acl.close()


def roundtrip(cache: AnswerCache, doc: str = "kb/refunds.md") -> None:
    key = cache.key("qa", "How long is the refund window?")
    assert cache.lookup(key) is None
    assert cache.store(key, "30 days", [doc])
    assert cache.lookup(key).value == "30 days"  # type: ignore[union-attr]
    assert cache.dependents(doc) == [cache.schema.entry(key)]
    assert cache.invalidate_source(doc) == 1
    assert cache.lookup(key) is None
    assert cache.store(key, "30 days", [doc])
    cache.invalidate_namespace()
    assert cache.lookup(key) is None
    assert cache.store(key, "30 days", [doc])
    cache.invalidate_all()
    assert cache.lookup(key) is None
    cache.purge()
    assert cache.stats()["namespaces"][cache.namespace]["hits"] == 1
    assert cache.clear() >= 0


async def aroundtrip(cache: AnswerCache, doc: str = "kb/async.md") -> None:
    key = cache.key("qa", "async?")
    assert await cache.alookup(key) is None
    assert await cache.astore(key, "yes", [doc])
    assert (await cache.alookup(key)).value == "yes"  # type: ignore[union-attr]
    assert await cache.adependents(doc) == [cache.schema.entry(key)]
    assert await cache.ainvalidate_source(doc) == 1
    assert await cache.alookup(key) is None
    assert await cache.astore(key, "yes", [doc])
    await cache.ainvalidate_all()
    assert await cache.alookup(key) is None
    await cache.apurge()
    assert (await cache.astats())["namespaces"][cache.namespace]["hits"] == 1


# -- a managed service's user: +@all -@dangerous, so no INFO ------------------------------------------------


MANAGED = ("+@all", "-@dangerous")


def test_a_user_without_info_gets_a_working_cache(acl: Acl, prefix: str, caplog: Any) -> None:
    url = acl.user("app", f"~{prefix}:*", *MANAGED)
    with caplog.at_level(logging.WARNING, logger="valkey_rag_cache"):
        cache = AnswerCache(url, prefix=prefix, namespace="docs:technical")
        roundtrip(cache)
        assert cache.connector.cluster is acl.cluster  # told apart without INFO
        acache = AnswerCache(url, prefix=prefix, namespace="faqs")
        asyncio.run(aroundtrip(acache))
        assert acache.connector.cluster is acl.cluster
    assert cache.health.errors == 0 and acache.health.errors == 0
    assert not [r for r in caplog.records if r.name == "valkey_rag_cache"]
    assert acl.refused("app") == []  # nothing was refused to the cache
    with pytest.raises(NoPermissionError):
        valkey.Valkey.from_url(url).info()  # and yet the restriction is real


def test_doctor_says_what_it_could_not_read(acl: Acl, prefix: str) -> None:
    url = acl.user("app", f"~{prefix}:*", *MANAGED)
    report = AnswerCache(url, prefix=prefix).doctor()
    assert report.cluster is acl.cluster
    assert report.maxmemory_policy is None and report.maxmemory is None
    assert any("INFO not permitted" in n and "maxmemory-policy" in n for n in report.notes), report.notes
    assert "maxmemory-policy: unknown" in str(report)
    assert {obj for _, obj in acl.refused("app")} == {"info"}  # the only thing it was refused


def test_the_mode_probe_falls_back_when_hello_is_missing() -> None:
    """HELLO is exempt from ACLs but missing on old servers and some proxies: CLUSTER INFO, then INFO."""

    def drive(replies: list[Any]) -> tuple[Any, list[tuple[str, ...]]]:
        probe, sent, reply = cluster_probe(), [], None
        try:
            while True:
                sent.append(probe.send(reply))
                reply = replies.pop(0)
        except StopIteration as done:
            return done.value, sent
        except CacheError as exc:
            return exc, sent

    unknown = ResponseError("unknown command 'HELLO'")
    assert drive([[b"server", b"valkey", b"mode", b"cluster"]]) == (True, [("HELLO",)])
    assert drive([{"mode": "standalone"}])[0] is False  # a RESP3 client's reply
    assert drive([unknown, b"cluster_state:ok"])[0] is True
    disabled = ResponseError("ERR This instance has cluster support disabled")
    assert drive([unknown, disabled]) == (False, [("HELLO",), ("CLUSTER", "INFO")])
    noperm = NoPermissionError("NOPERM")
    assert drive([unknown, noperm, {"cluster_enabled": 1}])[0] is True
    refused, sent = drive([unknown, noperm, noperm])
    assert isinstance(refused, CacheError) and "pass cluster=True or cluster=False" in str(refused)
    assert sent == [("HELLO",), ("CLUSTER", "INFO"), ("INFO", "cluster")]


@pytest.fixture(scope="module")
def without_hello() -> Iterator[Server]:
    """A real server that has no HELLO (as old servers and some proxies)."""
    server = Server(free_port(), tempfile.mkdtemp(prefix="vrc-nohello-"), ["--rename-command", "HELLO", '""'])
    server.start()
    yield server
    server.stop()


@pytest.mark.standalone
def test_a_server_without_hello_is_told_apart_by_cluster_info(without_hello: Server, prefix: str) -> None:
    with pytest.raises(ResponseError):
        valkey.Valkey(port=without_hello.port).execute_command("HELLO")
    acl = Acl([without_hello.port], prefix)
    try:
        url = acl.user("app", f"~{prefix}:*", *MANAGED)
        cache = AnswerCache(url, prefix=prefix)
        roundtrip(cache)
        assert cache.connector.cluster is False
        asyncio.run(aroundtrip(AnswerCache(url, prefix=prefix, namespace="async")))
        assert {obj for _, obj in acl.refused("app")} <= {"hello"}
        # Nothing tells the mode: the warning names the option that does.
        url = acl.user("blind", f"~{prefix}:*", *MANAGED, "-cluster")
        blind = AnswerCache(url, prefix=prefix)
        logger = logging.getLogger("valkey_rag_cache")
        records: list[logging.LogRecord] = []
        handler = logging.Handler()
        handler.emit = records.append  # type: ignore[method-assign]
        logger.addHandler(handler)
        try:
            assert blind.lookup(blind.key("qa", 1)) is None
        finally:
            logger.removeHandler(handler)
        assert any("pass cluster=True or cluster=False" in r.getMessage() for r in records)
        roundtrip(AnswerCache(url, prefix=prefix, namespace="told", cluster=False))
    finally:
        acl.close()


# -- a user confined to one tenant's keys ------------------------------------------------------------------


def tenant(acl: Acl, prefix: str, name: str) -> str:
    return acl.user(name, f"~{prefix}:{{{name}}}*", *MANAGED)


@pytest.fixture
def tenants(acl: Acl, prefix: str) -> Callable[..., AnswerCache]:
    urls = {t: tenant(acl, prefix, t) for t in ("tenant-a", "tenant-b")}

    def make(namespace: str, **kwargs: Any) -> AnswerCache:
        return AnswerCache(urls[namespace.split(":")[0]], prefix=prefix, namespace=namespace, **kwargs)

    return make


def test_a_confined_cache_works_under_a_tenant_user(
    acl: Acl, tenants: Callable[..., AnswerCache], caplog: Any
) -> None:
    with caplog.at_level(logging.WARNING, logger="valkey_rag_cache"):
        app = tenants("tenant-a:support", confined=True)
        roundtrip(app)
        asyncio.run(aroundtrip(tenants("tenant-a:billing", confined=True)))
        assert app.connector.cluster is acl.cluster
        report = app.doctor()
    assert any("INFO not permitted" in n for n in report.notes)
    assert app.health.errors == 0 and not [r for r in caplog.records if r.name == "valkey_rag_cache"]
    assert {obj for _, obj in acl.refused("tenant-a")} == {"info"}  # doctor's INFO, nothing else: no NOPERM


def test_an_unconfined_cache_under_a_tenant_user_caches_nothing(tenants: Callable[..., AnswerCache]) -> None:
    # Why the mode exists: every call of an unconfined cache touches the index of all groups.
    cache = tenants("tenant-a")
    key = cache.key("qa", 1)
    cache.lookup(key)
    assert cache.store(key, "v") is False


def test_confined_invalidations_cover_the_tree_and_only_it(tenants: Callable[..., AnswerCache]) -> None:
    a, b = tenants("tenant-a:support", confined=True), tenants("tenant-b:support", confined=True)
    ka, kb = a.key("qa", "refunds?"), b.key("qa", "refunds?")
    for cache, key in ((a, ka), (b, kb)):
        cache.lookup(key)
        assert cache.store(key, "30 days", ["kb/refunds.md"])
    assert a.dependents("kb/refunds.md") == [a.schema.entry(ka)]
    assert a.invalidate_source("kb/refunds.md") == 1
    assert a.lookup(ka) is None and b.lookup(kb) is not None  # tenant-b's tree is not a's to invalidate
    a.lookup(ka)
    assert a.store(ka, "30 days", ["kb/refunds.md"])
    a.invalidate_all()  # the version of a's tree
    assert a.lookup(ka) is None and b.lookup(kb) is not None
    assert set(a.stats()["namespaces"]) <= {"tenant-a:support", "*"}  # '*': its tree-wide invalidations
    with pytest.raises(ValueError, match="confined to the namespace tree 'tenant-a'"):
        a.key("qa", 1, namespace="tenant-b")
    with pytest.raises(ValueError, match="outside it"):
        a.invalidate_namespace("tenant-b")


def test_no_stale_hit_within_a_confined_tree(
    acl: Acl, prefix: str, tenants: Callable[..., AnswerCache]
) -> None:
    app, ingest = tenants("tenant-a:support", confined=True), tenants("tenant-a", confined=True)
    key = app.key("qa", "refunds?")
    # An invalidation between the miss and the write: the write is refused.
    assert app.lookup(key) is None
    assert ingest.invalidate_source("kb/refunds.md") == 0
    assert app.store(key, "30 days (old text)", ["kb/refunds.md"]) is False
    assert app.lookup(key) is None
    assert app.store(key, "60 days", ["kb/refunds.md"])
    # The tree's clock lost (evicted) and the document invalidated afterwards: still no stale hit.
    clock = f"{prefix}:{{tenant-a}}:clock"
    acl.delete(clock)
    ingest.invalidate_source("kb/refunds.md")
    assert app.lookup(key) is None
    assert app.store(key, "90 days", ["kb/refunds.md"])
    # The clock lost before a lookup: a new era retires what the tree held.
    acl.delete(clock)
    assert app.lookup(key) is None
    ingest.invalidate_namespace("tenant-a:support")
    assert app.lookup(key) is None


def test_an_operator_reaches_a_confined_tree_once_it_is_registered(
    acl: Acl, prefix: str, tenants: Callable[..., AnswerCache]
) -> None:
    app = tenants("tenant-a:support", confined=True)
    key = app.key("qa", "refunds?")
    app.lookup(key)
    assert app.store(key, "30 days", ["kb/refunds.md"])
    operator = AnswerCache(
        acl.user("operator", f"~{prefix}:*", *MANAGED), prefix=prefix, namespace="tenant-a"
    )
    assert operator.invalidate_source("kb/refunds.md") == 0  # the index of groups does not list the tree
    assert app.lookup(key) is not None  # the documented limit: register confined trees with the operator
    assert operator.register() is True
    assert app.lookup(key) is None  # a tree listed anew is retired: an invalidation may have skipped it
    assert operator.register() is False
    assert app.store(key, "30 days", ["kb/refunds.md"])
    assert operator.invalidate_source("kb/refunds.md") == 1
    assert app.lookup(key) is None
    with pytest.raises(ValueError, match="confined cache cannot write the index"):
        app.register()


def test_a_confined_cache_never_touches_the_index_of_groups(
    make_cache: Callable[..., AnswerCache], raw_client: Any, prefix: str
) -> None:
    cache = make_cache(namespace="tenant-a:support", confined=True)
    roundtrip(cache)
    cache.doctor()
    assert raw_client.exists(f"{prefix}:groups") == 0
    assert all(k.decode().startswith(f"{prefix}:{{tenant-a}}:") for k in raw_client.scan_iter(f"{prefix}:*"))
