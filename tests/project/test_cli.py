"""The `valkey-rag-cache` command line, end to end against a real Valkey (standalone, cluster, and as the
README's ACL user): click's CliRunner for each command, and real subprocesses for the console script and
``python -m valkey_rag_cache``."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import valkey
from click.testing import CliRunner, Result
from test_readme import blocks

from servers import Server, start_standalone
from valkey_rag_cache import AnswerCache
from valkey_rag_cache.cli import main

pytestmark = pytest.mark.standalone


def keys_under(raw: Any, prefix: str) -> list[str]:
    if hasattr(raw, "get_primaries"):
        conns = [raw.get_valkey_connection(n) for n in raw.get_primaries()]
    else:
        conns = [raw]
    return sorted(k.decode() for c in conns for k in c.scan_iter(match=f"{prefix}:*"))


def cli(url: str | None, prefix: str, *args: str, input: str | None = None) -> Result:
    env = {"VALKEY_URL": url} if url else {"VALKEY_URL": ""}
    return CliRunner().invoke(main, ["--prefix", prefix, *args], env=env, input=input, catch_exceptions=False)


def seed(url: str, prefix: str) -> tuple[AnswerCache, dict[str, Any]]:
    cache = AnswerCache(url, prefix=prefix, namespace="support")
    keys = {}
    for ns, sources in (("support", ["kb/refunds.md"]), ("billing:eu", ["kb/refunds.md", "kb/vat.md"])):
        key = cache.key("qa", "refund window?", namespace=ns)
        assert cache.lookup(key) is None
        assert cache.store(key, "30 days.", sources)
        assert cache.lookup(key) is not None
        keys[ns] = key
    # Counts of lookups answered without a script reach Valkey with a later call, or within a second
    # (`tally.py`); the CLI below is another process's view.
    cache.flush_counts()
    return cache, keys


def test_stats_table_json_filter_reset_and_watch(standalone_url: str, prefix: str) -> None:
    cache, _ = seed(standalone_url, prefix)
    table = cli(standalone_url, prefix, "stats")
    assert table.exit_code == 0
    lines = table.stdout.splitlines()
    assert lines[0].split() == [
        "namespace",
        "hits",
        "misses",
        "hit",
        "rate",
        "stale",
        "bad",
        "writes",
        "refused",
        "invalidations",
    ]
    assert lines[2].split() == ["billing:eu", "1", "1", "50.0%", "0", "0", "1", "0", "0"]
    assert lines[4].split()[:3] == ["(total)", "2", "2"]

    data = json.loads(cli(standalone_url, prefix, "stats", "billing", "--json").stdout)
    assert list(data["namespaces"]) == ["billing:eu"]
    assert data["namespaces"]["billing:eu"]["hit_rate"] == 0.5
    assert data["totals"]["writes"] == 1

    watched = cli(standalone_url, prefix, "--json", "stats", "--watch", "--count", "3", "--interval", "0.1")
    assert [json.loads(line)["totals"]["hits"] for line in watched.stdout.splitlines()] == [2, 2, 2]

    assert cli(standalone_url, prefix, "stats", "billing:eu", "--reset").exit_code == 0
    assert set(cache.stats()["namespaces"]) == {"support"}


def test_doctor_exit_code_gates_a_deploy(standalone_url: str, prefix: str) -> None:
    good = cli(standalone_url, prefix, "doctor", "--json")
    assert good.exit_code == 0 and json.loads(good.stdout)["maxmemory_policy"] == "volatile-lru"
    bad_server = start_standalone(maxmemory_policy="noeviction")
    try:
        bad = cli(bad_server.url, prefix, "doctor")
        assert bad.exit_code == 1
        assert "PROBLEM: no maxmemory with noeviction" in bad.stdout
    finally:
        bad_server.stop()


def test_invalidate_source_prints_what_it_retired(standalone_url: str, prefix: str) -> None:
    cache, keys = seed(standalone_url, prefix)
    out = cli(standalone_url, prefix, "invalidate", "source", "kb/refunds.md", "kb/unknown.md")
    assert out.exit_code == 0
    assert out.stdout.strip() == "retired 2 answer(s) built on kb/refunds.md, kb/unknown.md"
    assert all(cache.lookup(k) is None for k in keys.values())
    again = json.loads(cli(standalone_url, prefix, "invalidate", "source", "kb/refunds.md", "--json").stdout)
    assert again == {"retired": 0, "sources": ["kb/refunds.md"]}


def test_invalidate_namespace_spares_the_others(standalone_url: str, prefix: str) -> None:
    cache, keys = seed(standalone_url, prefix)
    out = cli(standalone_url, prefix, "invalidate", "namespace", "billing")
    assert out.exit_code == 0 and "billing" in out.stdout
    assert cache.lookup(keys["billing:eu"]) is None
    assert cache.lookup(keys["support"]) is not None
    assert cli(standalone_url, prefix, "invalidate", "namespace", "a::b").exit_code == 2


def test_invalidate_all_asks_first(standalone_url: str, prefix: str) -> None:
    cache, keys = seed(standalone_url, prefix)
    declined = cli(standalone_url, prefix, "invalidate", "all", input="n\n")
    assert declined.exit_code == 1 and "nothing was done" in declined.stderr
    assert cache.lookup(keys["support"]) is not None
    no_answer = cli(standalone_url, prefix, "invalidate", "all", input="")  # a script without a terminal
    assert no_answer.exit_code == 1
    assert cache.lookup(keys["support"]) is not None
    confirmed = cli(standalone_url, prefix, "invalidate", "all", input="y\n")
    assert confirmed.exit_code == 0 and "retired every answer" in confirmed.stdout
    assert all(cache.lookup(k) is None for k in keys.values())


def test_dependents_lists_live_answers(standalone_url: str, prefix: str) -> None:
    cache, keys = seed(standalone_url, prefix)
    listed = json.loads(cli(standalone_url, prefix, "dependents", "kb/vat.md", "--json").stdout)
    assert listed == [cache.schema.entry(keys["billing:eu"])]
    none = cli(standalone_url, prefix, "dependents", "kb/other.md")
    assert none.exit_code == 0 and "no live answer" in none.stdout


def test_purge_reclaims_with_a_progress_bar_on_stderr(standalone_url: str, prefix: str) -> None:
    cache, keys = seed(standalone_url, prefix)
    cache.invalidate_namespace("support")  # leaves a stale entry for purge to find
    raw = valkey.Valkey.from_url(standalone_url)
    assert raw.exists(cache.schema.entry(keys["support"]))
    out = cli(standalone_url, prefix, "purge", "--keep-idle", "--json")
    assert out.exit_code == 0
    assert json.loads(out.stdout)["removed"] >= 1  # stdout is the JSON alone; the bar went to stderr
    assert "purging" in out.stderr
    assert not raw.exists(cache.schema.entry(keys["support"]))
    assert cache.lookup(keys["billing:eu"]) is not None


def test_drop_removes_a_tree_after_confirmation(standalone_url: str, prefix: str) -> None:
    cache, keys = seed(standalone_url, prefix)
    raw = valkey.Valkey.from_url(standalone_url)
    assert cli(standalone_url, prefix, "drop", "billing", input="n\n").exit_code == 1
    assert cache.lookup(keys["billing:eu"]) is not None
    # That hit's count waits in this process for a background flush (`tally`), which could land after the
    # drop and make the tree's stats anew: sent now, so the drop is the last write to the tree.
    cache.flush_counts()
    out = cli(standalone_url, prefix, "drop", "billing", "--yes")
    assert out.exit_code == 0 and out.stdout.startswith("dropped billing:")
    assert not [k for k in keys_under(raw, prefix) if "{billing}" in k]
    assert cache.lookup(keys["support"]) is not None


def test_errors_are_one_line_with_meaningful_exit_codes(prefix: str, unused_port: int) -> None:
    missing = cli(None, prefix, "stats")
    assert missing.exit_code == 2 and "pass --url or set VALKEY_URL" in missing.stderr
    down = cli(f"valkey://ops:hunter2@127.0.0.1:{unused_port}", prefix, "invalidate", "source", "kb/a.md")
    assert down.exit_code == 3
    assert down.stderr.count("\n") == 1 and "Traceback" not in down.stderr and "hunter2" not in down.stderr
    assert cli(None, prefix, "no-such-command").exit_code == 2


@pytest.mark.cluster
def test_cluster(cluster_url: str, prefix: str) -> None:
    cache, keys = seed(cluster_url, prefix)
    assert json.loads(cli(cluster_url, prefix, "stats", "--json").stdout)["totals"]["hits"] == 2
    assert cli(cluster_url, prefix, "invalidate", "source", "kb/vat.md").stdout.startswith("retired 1 ")
    assert cli(cluster_url, prefix, "drop", "support", "-y").exit_code == 0
    assert cli(cluster_url, prefix, "purge", "--idle-after", "0").exit_code == 0
    assert cli(cluster_url, prefix, "purge", "--idle-after", "0").exit_code == 0
    assert keys_under(valkey.ValkeyCluster.from_url(cluster_url), prefix) == []


@pytest.fixture
def fresh_server() -> Iterator[Server]:
    server = start_standalone(maxmemory="64mb", maxmemory_policy="volatile-lru")
    yield server
    server.stop()


def test_every_command_runs_as_the_readme_acl_user(fresh_server: Server) -> None:
    setuser = next(
        line.strip()
        for _, body, _ in blocks("")
        for line in body.splitlines()
        if line.startswith("ACL SETUSER")
    )
    valkey.Valkey.from_url(fresh_server.url).execute_command(*shlex.split(setuser))
    words = shlex.split(setuser)
    user, password = words[2], next(w[1:] for w in words if w.startswith(">"))
    url = fresh_server.url.replace("valkey://", f"valkey://{user}:{password}@")
    seed(url, "llmcache")
    for args in (
        ["stats"],
        ["stats", "--reset", "support"],
        ["doctor"],
        ["dependents", "kb/refunds.md"],
        ["invalidate", "source", "kb/refunds.md"],
        ["invalidate", "namespace", "billing"],
        ["invalidate", "all", "--yes"],
        ["purge", "--idle-after", "0"],
        ["drop", "support", "--yes"],
    ):
        result = cli(url, "llmcache", *args)
        assert result.exit_code == 0, (args, result.stdout, result.stderr)
    # The user cannot reach another prefix: the command says so, in one line, with exit code 3.
    refused = cli(url, "other", "invalidate", "all", "--yes")
    assert refused.exit_code == 3 and "NoPermissionError" in refused.stderr


def test_console_script_and_python_m(standalone_url: str, prefix: str) -> None:
    seed(standalone_url, prefix)
    script = Path(sysconfig.get_path("scripts")) / "valkey-rag-cache"
    env = {**os.environ, "VALKEY_URL": standalone_url}
    for command in ([str(script)], [sys.executable, "-m", "valkey_rag_cache"]):
        done = subprocess.run(
            [*command, "--prefix", prefix, "--json", "stats"], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["totals"]["writes"] == 2
        usage = subprocess.run([*command, "stats", "--bogus"], env=env, capture_output=True, text=True)
        assert usage.returncode == 2 and "valkey-rag-cache stats" in usage.stderr
