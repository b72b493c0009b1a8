"""Pure tests of `ops.lookup`: the Valkey calls it asks for, and what it makes of the replies.

No server and no client (see `ops_support`): these pin each operation's request and reply handling, so that a
change to an operation or a driver shows at once what changed.
"""

from __future__ import annotations

import pytest
from ops_support import SCHEMA, env, run, stored

from valkey_rag_cache import EntryKey, Seen
from valkey_rag_cache.keys import KeySchema
from valkey_rag_cache.ops import lookup
from valkey_rag_cache.ops.lookup import BAD, HIT, MISS, NO_CLOCK, STALE, Lookup
from valkey_rag_cache.ops.requests import Cmd, Eval, FanOut


@pytest.fixture
def key() -> EntryKey:
    return SCHEMA.entry_key("qa", {"q": "hi"}, "docs:tech")


def test_lookup_is_one_script_call_declaring_every_key_it_names(key: EntryKey) -> None:
    ops, result = run(lookup.lookup(env(), key), [[MISS, b"era1 3 2"]])
    (op,) = ops
    assert isinstance(op, Eval) and op.script.name == "lookup"
    assert op.keys == [SCHEMA.entry(key), b"p:{docs}:clock", b"p:{docs}:stats", b"p:groups"]
    assert op.args[0].startswith(b"p:{docs}: p:{docs}:t: ") and op.args[0].endswith(
        f" 1 {env().token_ttl}".encode()
    )
    assert op.args[1] == b"docs:tech"
    assert result == Lookup(None, Seen("era1", 3, 2), MISS)


def test_lookup_in_a_cluster_names_only_the_entry(key: EntryKey) -> None:
    ops, _ = run(lookup.lookup(env(cluster=True), key), [[MISS, b"era1 3 2"]])
    assert ops[0].keys == [SCHEMA.entry(key), b"p:{docs}:clock", b"p:{docs}:stats"]


def test_a_hit_decodes_the_body_after_the_header(key: EntryKey) -> None:
    _, result = run(lookup.lookup(env(), key), [[HIT, b"era1 3 2", stored({"a": 1})]])
    assert result.status == HIT and result.seen == Seen("era1", 3, 2)
    assert result.hit.value == {"a": 1} and result.hit.sources == ("a.md",)


def test_a_hit_from_a_client_that_decodes_replies_to_str(key: EntryKey) -> None:
    _, result = run(lookup.lookup(env(), key), [[HIT, "era1 3 2", stored("x").decode()]])
    assert result.hit.value == "x"


def test_a_stale_entry_is_a_miss_with_what_the_lookup_saw(key: EntryKey) -> None:
    _, result = run(lookup.lookup(env(), key), [[STALE, b"era9 7 1"]])
    assert result == Lookup(None, Seen("era9", 7, 1), STALE)


def test_a_body_the_client_cannot_read_is_discarded_and_counted_bad(key: EntryKey) -> None:
    ops, result = run(lookup.lookup(env(), key), [[HIT, b"e 1 0", b"header\n\nnot json"], [1, 1, 1, 1]])
    assert result == Lookup(None, Seen("e", 1, 0), BAD)
    discard = ops[1]
    assert isinstance(discard, FanOut)
    assert discard.calls[0] == Cmd(("UNLINK", KeySchema("p").entry(key)))
    counted = {c.args[2]: c.args[3] for c in discard.calls[1:]}
    assert counted == {"bad:docs:tech": 1, "hits:docs:tech": -1, "misses:docs:tech": 1}


def test_a_cluster_lookup_without_a_clock_registers_the_group_first(key: EntryKey) -> None:
    s = KeySchema("p")
    ops, result = run(lookup.lookup(env(cluster=True), key), [[NO_CLOCK], 1, [b"fresh", b"0", b"0"], 1])
    sadd, register, count = ops[1:]
    assert sadd == Cmd(("SADD", "p:groups", s.group_base("docs")))
    assert isinstance(register, Eval) and register.script.name == "register"
    assert register.keys == [s.clock("docs")] and register.args[-1] == "0"  # not retired: it is new
    assert count == Cmd(("HINCRBY", s.stats("docs"), "misses:docs:tech", 1))
    assert result == Lookup(None, Seen("fresh", 0, 0), MISS)


def test_lookup_without_stats_counts_nothing_on_a_new_cluster_group(key: EntryKey) -> None:
    ops, _ = run(
        lookup.lookup(env(cluster=True, count_stats=False), key), [[NO_CLOCK], 1, [b"fresh", b"0", b"0"]]
    )
    assert not any(isinstance(op, Cmd) and op.args[0] == "HINCRBY" for op in ops)
