"""Pure tests of `ops.write`: the Valkey calls it asks for, and what it makes of the replies.

No server and no client (see `ops_support`): these pin each operation's request and reply handling, so that a
change to an operation or a driver shows at once what changed.
"""

from __future__ import annotations

import pytest
from ops_support import SCHEMA, env, run

from valkey_rag_cache import EntryKey, Seen, Source
from valkey_rag_cache.envelope import decode_body
from valkey_rag_cache.keys import KeySchema, source_digest
from valkey_rag_cache.ops import write
from valkey_rag_cache.ops.requests import Cmd, Eval


@pytest.fixture
def key() -> EntryKey:
    return SCHEMA.entry_key("qa", {"q": "hi"}, "docs:tech")


def small_args(op: Eval) -> list[str]:
    packed = op.args[0]
    return (packed.decode() if isinstance(packed, bytes) else str(packed)).split(" ")


def test_a_write_is_one_script_call_carrying_the_view_and_the_sources(key: EntryKey) -> None:
    seen = Seen("era1", 3, 2)
    sources = (Source("a.md", "realtime"), Source("b.md"))
    ops, result = run(write.write(env(), key, {"a": 1}, sources, seen), [1])
    (op,) = ops
    tree = SCHEMA.tree(key.namespace)
    assert op.script.name == "write"
    assert op.keys == [SCHEMA.entry(key), tree.clock, tree.stats, tree.nss, "p:groups"]
    small = small_args(op)
    assert small[3:6] == ["era1", "3", "2"]  # the lookup's view, checked by the script
    assert small[-2:] == [source_digest("a.md"), source_digest("b.md")]
    assert op.args[1] == "docs:tech"
    body = decode_body(op.args[2])
    assert body is not None and body.value == {"a": 1} and body.sources == ("a.md", "b.md")
    assert body.content_type == "realtime" and body.created_at == 1000.0  # the narrowest TTL's type
    assert result is True


def test_a_refused_write_returns_false(key: EntryKey) -> None:
    _, result = run(write.write(env(), key, "x", (), Seen("e", 1, 0)), [0])
    assert result is False


def test_a_write_without_a_lookup_carries_no_view(key: EntryKey) -> None:
    ops, _ = run(write.write(env(), key, "x", (), None), [1])
    assert small_args(ops[0])[3:6] == ["-", "0", "0"]


def test_a_value_json_cannot_hold_asks_for_nothing(key: EntryKey) -> None:
    ops, result = run(write.write(env(), key, {"x": object()}, (), None), [])
    assert ops == [] and result is None  # falsy (store() returns False); None: never sent, not refused


def test_a_cluster_write_without_a_lookup_registers_its_group(key: EntryKey) -> None:
    s = KeySchema("p")
    ops, result = run(write.write(env(cluster=True), key, "x", (), None), [1, [b"e", b"0", b"0"], 1])
    sadd, retire, stored_op = ops
    assert sadd == Cmd(("SADD", "p:groups", s.group_base("docs")))
    assert retire.script.name == "register" and retire.args[-1] == "1"  # a lost group is retired
    assert (
        stored_op.script.name == "write"
        and stored_op.keys[0] == s.entry(key)
        and "p:groups" not in stored_op.keys
    )
    assert result is True


def test_a_cluster_write_to_a_known_group_skips_the_registration(key: EntryKey) -> None:
    ops, _ = run(write.write(env(cluster=True), key, "x", (), None), [0, 1])
    assert [type(op) for op in ops] == [Cmd, Eval] and ops[1].script.name == "write"
