"""Pure tests of `ops.housekeeping`: the Valkey calls it asks for, and what it makes of the replies.

No server and no client (see `ops_support`): these pin each operation's request and reply handling, so that a
change to an operation or a driver shows at once what changed.
"""

from __future__ import annotations

from ops_support import env, run

from valkey_rag_cache.keys import KeySchema, source_digest
from valkey_rag_cache.ops import housekeeping
from valkey_rag_cache.ops.requests import Cmd, FanOut, NodeCmd, Primaries


def test_dependents_asks_every_group_and_merges_sorted() -> None:
    ops, result = run(
        housekeeping.dependents(env(), "a.md"), [[b"p:{y}:", b"p:{x}:"], [[b"k2"], [b"k1", b"k3"]]]
    )
    calls = ops[1].calls
    assert [c.keys for c in calls] == [["p:{x}:nss"], ["p:{y}:nss"]]
    assert all(c.script.name == "dependents" and c.args[-1] == source_digest("a.md") for c in calls)
    assert result == ["k1", "k2", "k3"]


def test_stats_add_up_per_namespace_across_groups() -> None:
    replies = [[b"p:{x}:", b"p:{y}:"], [{b"hits:x": b"2", b"misses:x": b"1"}, {b"hits:y:z": b"5"}]]
    ops, result = run(housekeeping.stats(env()), replies)
    assert ops[1] == FanOut([Cmd(("HGETALL", "p:{x}:stats")), Cmd(("HGETALL", "p:{y}:stats"))])
    assert result == {"x": {"hits": 2, "misses": 1}, "y:z": {"hits": 5}}


def test_purge_scans_every_primary_and_sweeps_entries_and_dependency_sets() -> None:
    s = KeySchema("p")
    entry = "p:{x}:e:x:abc"
    deps = f"p:{{x}}:d:{source_digest('a.md')}:x"
    ops, removed = run(
        housekeeping.purge(env(), count=10),
        [["n1", "n2"], (5, [entry.encode(), deps.encode(), b"p:{x}:clock"]), [1, 0], (0, []), (0, [])],
    )
    assert ops[0] == Primaries()
    assert ops[1] == NodeCmd(("SCAN", 0, "MATCH", s.scan_pattern(), "COUNT", 10), node="n1")
    sweep_entry, sweep_deps = ops[2].calls
    assert sweep_entry.keys == [entry] and sweep_entry.args == ["e", "p:{x}:t:", ""]
    assert sweep_deps.keys == [deps] and sweep_deps.args == ["d", "", "p:{x}:e:x:"]
    assert ops[3].args[1] == 5 and ops[3].node == "n1"  # the same primary, from its cursor
    assert ops[4].args[1] == 0 and ops[4].node == "n2"  # then the next primary, from the start
    assert removed == 1


def test_clear_invalidates_then_unlinks_the_namespace_keys() -> None:
    ops, removed = run(housekeeping.clear(env(), "docs", count=50), [[1], (7, [b"k1"]), 1, (0, [b"k2"]), 1])
    assert ops[0].script.name == "invalidate"
    scan = ops[1]
    assert isinstance(scan, NodeCmd) and scan.key == "p:{docs}:clock" and scan.args[3] == "p:{docs}:e:docs:*"
    assert ops[2] == Cmd(("UNLINK", b"k1")) and ops[4] == Cmd(("UNLINK", b"k2"))
    assert removed == 2


def test_info_reads_memory_on_every_primary() -> None:
    ops, result = run(housekeeping.info(env()), [[None, "n2"], {"a": 1}, {"b": 2}])
    assert ops[1:] == [NodeCmd(("INFO", "memory"), node=None), NodeCmd(("INFO", "memory"), node="n2")]
    assert result == [{"a": 1}, {"b": 2}]
