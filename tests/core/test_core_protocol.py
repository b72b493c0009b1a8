"""The sans-IO operations of `protocol.py`, driven by hand: the Valkey calls each one asks for, and what it
makes of the replies. No server and no client: a reply here is what a driver would hand back.

These pin the request and reply handling of every operation, so that moving the operations into modules of
their own (or changing a driver) shows at once what changed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from valkey_rag_cache import EntryKey, InvalidationError, Seen, Source, TTLPolicy
from valkey_rag_cache.envelope import decode_body, encode_body
from valkey_rag_cache.keys import KeySchema, source_digest
from valkey_rag_cache.protocol import (
    BAD,
    HIT,
    INVALIDATE_BATCH,
    MISS,
    NO_CLOCK,
    STALE,
    Cmd,
    Context,
    Eval,
    FanOut,
    Flow,
    Lookup,
    NodeCmd,
    Primaries,
)


def context(cluster: bool = False) -> Context:
    return Context(KeySchema("p"), TTLPolicy({}, "documentation"), cluster=cluster, clock=lambda: 1000.0)


def run(flow: Flow, replies: list[Any]) -> tuple[list[Any], Any]:
    """Drive `flow`: send `replies` one per yielded op; return the ops and the flow's result."""
    ops: list[Any] = []
    pending: Iterator[Any] = iter(replies)
    try:
        op = next(flow)
        while True:
            ops.append(op)
            reply = next(pending, _NONE)
            assert reply is not _NONE, f"the flow asked for more than the replies given: {op}"
            op = flow.send(reply)
    except StopIteration as done:
        assert next(pending, _NONE) is _NONE, "the flow ended before using every reply"
        return ops, done.value


_NONE = object()


@pytest.fixture
def key() -> EntryKey:
    return KeySchema("p").entry_key("qa", {"q": "hi"}, "docs:tech")


def stored(value: Any = "answer", sources: tuple[str, ...] = ("a.md",)) -> bytes:
    # An entry as Valkey holds it: the scripts' header, a blank line, then the JSON body.
    return b"tokens-header\n\n" + encode_body(value, sources, "documentation", 1.0)


# -- lookup -------------------------------------------------------------------------------------------


def test_lookup_is_one_script_call_on_the_entry_and_the_group_index(key: EntryKey) -> None:
    ops, result = run(context().lookup(key), [[MISS, b"era1 3 2"]])
    (op,) = ops
    assert isinstance(op, Eval) and op.script.name == "lookup"
    assert op.keys == [KeySchema("p").entry(key), "p:groups"]
    assert op.args[1] == b"docs:tech"
    assert result == Lookup(None, Seen("era1", 3, 2), MISS)


def test_lookup_in_a_cluster_names_only_the_entry(key: EntryKey) -> None:
    ops, _ = run(context(cluster=True).lookup(key), [[MISS, b"era1 3 2"]])
    assert ops[0].keys == [KeySchema("p").entry(key)]


def test_a_hit_decodes_the_body_after_the_header(key: EntryKey) -> None:
    _, result = run(context().lookup(key), [[HIT, b"era1 3 2", stored({"a": 1})]])
    assert result.status == HIT and result.seen == Seen("era1", 3, 2)
    assert result.hit.value == {"a": 1} and result.hit.sources == ("a.md",)


def test_a_hit_from_a_client_that_decodes_replies_to_str(key: EntryKey) -> None:
    _, result = run(context().lookup(key), [[HIT, "era1 3 2", stored("x").decode()]])
    assert result.hit.value == "x"


def test_a_stale_entry_is_a_miss_with_what_the_lookup_saw(key: EntryKey) -> None:
    _, result = run(context().lookup(key), [[STALE, b"era9 7 1"]])
    assert result == Lookup(None, Seen("era9", 7, 1), STALE)


def test_a_body_the_client_cannot_read_is_discarded_and_counted_bad(key: EntryKey) -> None:
    ops, result = run(context().lookup(key), [[HIT, b"e 1 0", b"header\n\nnot json"], [1, 1, 1, 1]])
    assert result == Lookup(None, Seen("e", 1, 0), BAD)
    discard = ops[1]
    assert isinstance(discard, FanOut)
    assert discard.calls[0] == Cmd(("UNLINK", KeySchema("p").entry(key)))
    counted = {c.args[2]: c.args[3] for c in discard.calls[1:]}
    assert counted == {"bad:docs:tech": 1, "hits:docs:tech": -1, "misses:docs:tech": 1}


def test_a_cluster_lookup_without_a_clock_registers_the_group_first(key: EntryKey) -> None:
    s = KeySchema("p")
    ops, result = run(context(cluster=True).lookup(key), [[NO_CLOCK], 1, [b"fresh", b"0", b"0"], 1])
    sadd, register, count = ops[1:]
    assert sadd == Cmd(("SADD", "p:groups", s.group_base("docs")))
    assert isinstance(register, Eval) and register.script.name == "register"
    assert register.keys == [s.clock("docs")] and register.args[-1] == "0"  # not retired: it is new
    assert count == Cmd(("HINCRBY", s.stats("docs"), "misses:docs:tech", 1))
    assert result == Lookup(None, Seen("fresh", 0, 0), MISS)


def test_lookup_without_stats_counts_nothing_on_a_new_cluster_group(key: EntryKey) -> None:
    ctx = context(cluster=True)
    ctx.count_stats = False
    ops, _ = run(ctx.lookup(key), [[NO_CLOCK], 1, [b"fresh", b"0", b"0"]])
    assert not any(isinstance(op, Cmd) and op.args[0] == "HINCRBY" for op in ops)


# -- write --------------------------------------------------------------------------------------------


def small_args(op: Eval) -> list[str]:
    packed = op.args[0]
    return (packed.decode() if isinstance(packed, bytes) else str(packed)).split(" ")


def test_a_write_is_one_script_call_carrying_the_view_and_the_sources(key: EntryKey) -> None:
    seen = Seen("era1", 3, 2)
    sources = (Source("a.md", "realtime"), Source("b.md"))
    ops, result = run(context().write(key, {"a": 1}, sources, seen), [1])
    (op,) = ops
    assert op.script.name == "write" and op.keys == [KeySchema("p").entry(key), "p:groups"]
    small = small_args(op)
    assert small[3:6] == ["era1", "3", "2"]  # the lookup's view, checked by the script
    assert small[-2:] == [source_digest("a.md"), source_digest("b.md")]
    assert op.args[1] == "docs:tech"
    body = decode_body(op.args[2])
    assert body is not None and body.value == {"a": 1} and body.sources == ("a.md", "b.md")
    assert body.content_type == "realtime" and body.created_at == 1000.0  # the narrowest TTL's type
    assert result is True


def test_a_refused_write_returns_false(key: EntryKey) -> None:
    _, result = run(context().write(key, "x", (), Seen("e", 1, 0)), [0])
    assert result is False


def test_a_write_without_a_lookup_carries_no_view(key: EntryKey) -> None:
    ops, _ = run(context().write(key, "x", (), None), [1])
    assert small_args(ops[0])[3:6] == ["-", "0", "0"]


def test_a_value_json_cannot_hold_asks_for_nothing(key: EntryKey) -> None:
    ops, result = run(context().write(key, {"x": object()}, (), None), [])
    assert ops == [] and result is None  # falsy (store() returns False); None: never sent, not refused


def test_a_cluster_write_without_a_lookup_registers_its_group(key: EntryKey) -> None:
    s = KeySchema("p")
    ops, result = run(context(cluster=True).write(key, "x", (), None), [1, [b"e", b"0", b"0"], 1])
    sadd, retire, write = ops
    assert sadd == Cmd(("SADD", "p:groups", s.group_base("docs")))
    assert retire.script.name == "register" and retire.args[-1] == "1"  # a lost group is retired
    assert write.script.name == "write" and write.keys == [s.entry(key)]
    assert result is True


def test_a_cluster_write_to_a_known_group_skips_the_registration(key: EntryKey) -> None:
    ops, _ = run(context(cluster=True).write(key, "x", (), None), [0, 1])
    assert [type(op) for op in ops] == [Cmd, Eval] and ops[1].script.name == "write"


# -- invalidation -------------------------------------------------------------------------------------


def test_invalidating_sources_on_one_server_is_one_pipeline_of_batches() -> None:
    ids = [f"doc-{i}" for i in range(INVALIDATE_BATCH + 1)] + ["doc-0"]  # a repeat counts once
    ops, result = run(context().invalidate_sources(ids), [[[3], [4]]])
    (fan,) = ops
    assert isinstance(fan, FanOut) and len(fan.calls) == 2
    assert all(c.script.name == "invalidate_everywhere" and c.keys == ["p:groups"] for c in fan.calls)
    assert all(c.args[3] == "p" for c in fan.calls)  # the prefix: the script checks every member against it
    suffixes = [a for c in fan.calls for a in c.args[4:]]
    assert suffixes == [KeySchema.source_suffix(i) for i in ids[:-1]]
    assert result == 7


def test_invalidating_no_sources_asks_for_nothing() -> None:
    assert run(context().invalidate_sources([]), []) == ([], 0)


def test_a_source_id_is_checked_before_anything_is_sent() -> None:
    with pytest.raises(ValueError):
        next(context().invalidate_sources([""]))
    with pytest.raises(TypeError):
        next(context().invalidate_sources([3]))  # type: ignore[list-item]


def test_invalidating_sources_in_a_cluster_goes_to_every_group() -> None:
    ops, result = run(context(cluster=True).invalidate_sources(["a"]), [[b"p:{x}:", b"p:{y}:"], [[1], [2]]])
    assert ops[0] == Cmd(("SMEMBERS", "p:groups"))
    calls = ops[1].calls
    assert [c.keys for c in calls] == [["p:{x}:clock"], ["p:{y}:clock"]]
    assert all(c.script.name == "invalidate" and c.args[-1] == KeySchema.source_suffix("a") for c in calls)
    assert result == 3


def test_invalidating_a_namespace_is_one_call_on_its_group() -> None:
    ops, _ = run(context().invalidate_namespace("docs:tech"), [[1]])
    (op,) = ops
    assert op.script.name == "invalidate" and op.keys == ["p:{docs}:clock"]
    assert op.args[0] == "p:{docs}:" and op.args[3] == "docs:tech" and op.args[4].startswith("n:")


def test_invalidate_all_bumps_the_version_token() -> None:
    ops, _ = run(context().invalidate_all(), [[[0]]])
    assert [c.args[4:] for c in ops[0].calls] == [["a"]]


def test_a_tree_that_could_not_be_invalidated_is_named_after_the_others_were() -> None:
    flow = context(cluster=True).invalidate_sources(["a"])
    with pytest.raises(InvalidationError, match=r"\['y'\]"):
        run(flow, [[b"p:{x}:", b"p:{y}:"], [[2], [0, b"p:{y}:"]]])


# -- housekeeping -------------------------------------------------------------------------------------


def test_dependents_asks_every_group_and_merges_sorted() -> None:
    ops, result = run(context().dependents("a.md"), [[b"p:{y}:", b"p:{x}:"], [[b"k2"], [b"k1", b"k3"]]])
    calls = ops[1].calls
    assert [c.keys for c in calls] == [["p:{x}:nss"], ["p:{y}:nss"]]
    assert all(c.script.name == "dependents" and c.args[-1] == source_digest("a.md") for c in calls)
    assert result == ["k1", "k2", "k3"]


def test_stats_add_up_per_namespace_across_groups() -> None:
    replies = [[b"p:{x}:", b"p:{y}:"], [{b"hits:x": b"2", b"misses:x": b"1"}, {b"hits:y:z": b"5"}]]
    ops, result = run(context().stats(), replies)
    assert ops[1] == FanOut([Cmd(("HGETALL", "p:{x}:stats")), Cmd(("HGETALL", "p:{y}:stats"))])
    assert result == {"x": {"hits": 2, "misses": 1}, "y:z": {"hits": 5}}


def test_purge_scans_every_primary_and_sweeps_entries_and_dependency_sets() -> None:
    s = KeySchema("p")
    entry = "p:{x}:e:x:abc"
    deps = f"p:{{x}}:d:{source_digest('a.md')}:x"
    ops, removed = run(
        context().purge(count=10),
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
    ops, removed = run(context().clear("docs", count=50), [[1], (7, [b"k1"]), 1, (0, [b"k2"]), 1])
    assert ops[0].script.name == "invalidate"
    scan = ops[1]
    assert isinstance(scan, NodeCmd) and scan.key == "p:{docs}:clock" and scan.args[3] == "p:{docs}:e:docs:*"
    assert ops[2] == Cmd(("UNLINK", b"k1")) and ops[4] == Cmd(("UNLINK", b"k2"))
    assert removed == 2


def test_info_reads_memory_on_every_primary() -> None:
    ops, result = run(context().info(), [[None, "n2"], {"a": 1}, {"b": 2}])
    assert ops[1:] == [NodeCmd(("INFO", "memory"), node=None), NodeCmd(("INFO", "memory"), node="n2")]
    assert result == [{"a": 1}, {"b": 2}]
