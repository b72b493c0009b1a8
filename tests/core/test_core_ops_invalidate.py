"""Pure tests of `ops.invalidate`: the Valkey calls it asks for, and what it makes of the replies.

No server and no client (see `ops_support`): these pin each operation's request and reply handling, so that a
change to an operation or a driver shows at once what changed.
"""

from __future__ import annotations

import pytest
from ops_support import env, run

from valkey_rag_cache import InvalidationError
from valkey_rag_cache.keys import KeySchema
from valkey_rag_cache.ops import invalidate
from valkey_rag_cache.ops.invalidate import INVALIDATE_BATCH
from valkey_rag_cache.ops.requests import Cmd, FanOut


def test_invalidating_sources_on_one_server_is_one_pipeline_of_batches() -> None:
    ids = [f"doc-{i}" for i in range(INVALIDATE_BATCH + 1)] + ["doc-0"]  # a repeat counts once
    ops, result = run(invalidate.invalidate_sources(env(), ids), [[[3], [4]]])
    (fan,) = ops
    assert isinstance(fan, FanOut) and len(fan.calls) == 2
    assert all(c.script.name == "invalidate_everywhere" and c.keys == ["p:groups"] for c in fan.calls)
    assert all(c.args[3] == "p" for c in fan.calls)  # the prefix: the script checks every member against it
    suffixes = [a for c in fan.calls for a in c.args[4:]]
    assert suffixes == [KeySchema.source_suffix(i) for i in ids[:-1]]
    assert result == 7


def test_invalidating_no_sources_asks_for_nothing() -> None:
    assert run(invalidate.invalidate_sources(env(), []), []) == ([], 0)


def test_a_source_id_is_checked_before_anything_is_sent() -> None:
    with pytest.raises(ValueError):
        next(invalidate.invalidate_sources(env(), [""]))
    with pytest.raises(TypeError):
        next(invalidate.invalidate_sources(env(), [3]))  # type: ignore[list-item]


def test_invalidating_sources_in_a_cluster_goes_to_every_group() -> None:
    ops, result = run(
        invalidate.invalidate_sources(env(cluster=True), ["a"]), [[b"p:{x}:", b"p:{y}:"], [[1], [2]]]
    )
    assert ops[0] == Cmd(("SMEMBERS", "p:groups"))
    calls = ops[1].calls
    assert [c.keys for c in calls] == [[f"p:{{{g}}}:{k}" for k in ("clock", "stats", "nss")] for g in "xy"]
    assert all(c.script.name == "invalidate" and c.args[-1] == KeySchema.source_suffix("a") for c in calls)
    assert result == 3


def test_invalidating_a_namespace_is_one_call_on_its_group() -> None:
    ops, _ = run(invalidate.invalidate_namespace(env(), "docs:tech"), [[1]])
    (op,) = ops
    assert op.script.name == "invalidate" and op.keys == ["p:{docs}:clock", "p:{docs}:stats", "p:{docs}:nss"]
    assert op.args[0] == "p:{docs}:" and op.args[3] == "docs:tech" and op.args[4].startswith("n:")


def test_invalidate_all_bumps_the_version_token() -> None:
    ops, _ = run(invalidate.invalidate_all(env()), [[[0]]])
    assert [c.args[4:] for c in ops[0].calls] == [["a"]]


def test_a_tree_that_could_not_be_invalidated_is_named_after_the_others_were() -> None:
    flow = invalidate.invalidate_sources(env(cluster=True), ["a"])
    with pytest.raises(InvalidationError, match=r"\['y'\]"):
        run(flow, [[b"p:{x}:", b"p:{y}:"], [[2], [0, b"p:{y}:"]]])
