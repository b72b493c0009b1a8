"""Pure tests of `ops.lookup.peek`, the script-free hit: what it asks for, when it hands over to the script.

No server (see `ops_support`): each reply is what a driver would hand back; an exception is thrown into the
flow as a driver throws a failed call.
"""

from __future__ import annotations

from typing import Any

import pytest
from ops_support import SCHEMA, env
from valkey.exceptions import ConnectionError, MovedError, ReadOnlyError, ResponseError

from valkey_rag_cache import EntryKey, Seen
from valkey_rag_cache.envelope import encode_body, entry
from valkey_rag_cache.ops import lookup
from valkey_rag_cache.ops.lookup import HIT, MISS, Lookup
from valkey_rag_cache.ops.requests import Cmd, Eval, FanOut

pytestmark = pytest.mark.fake
CLOCK = [b"e1", b"7", b"3"]  # era, counter, invalidations


@pytest.fixture
def key() -> EntryKey:
    return SCHEMA.entry_key("qa", {"q": "hi"}, "docs:tech")


def drive(flow: Any, replies: list[Any]) -> tuple[list[Any], Any]:
    ops, pending = [], iter(replies)
    try:
        op = next(flow)
        while True:
            ops.append(op)
            reply = next(pending)
            op = flow.throw(reply) if isinstance(reply, Exception) else flow.send(reply)
    except StopIteration as done:
        return ops, done.value


def value(era: str = "e1", invalidations: int = 3) -> bytes:
    return entry(era, invalidations, [("a", f"{era}.1")], encode_body("the answer", ("a.md",), None, 1.0))


def test_a_peek_is_one_raw_pipeline_with_a_write_first(key: EntryKey) -> None:
    ops, result = drive(lookup.peek(env(), key), [[0, 1, value(), CLOCK]])
    (op,) = ops
    assert isinstance(op, FanOut) and op.raw
    names = [c.args[0] for c in op.calls]
    assert names == ["HINCRBY", "SISMEMBER", "GET", "HMGET"]
    assert op.calls[0].args[3] == 0  # nothing to count yet: a write that counts nothing
    assert op.calls[2].args[1] == SCHEMA.entry(key)
    assert result.status == HIT and result.hit.value == "the answer"
    assert result.seen == Seen("e1", 7, 3) and result.tally is not None


def test_pending_counts_ride_along_instead_of_the_empty_write(key: EntryKey) -> None:
    counts = [Cmd(("HINCRBY", "p:{docs}:stats", b"hits:docs", 2))]
    ops, _ = drive(lookup.peek(env(), key, counts), [[2, 1, None, CLOCK]])
    assert ops[0].calls[0] is counts[0] and len(ops[0].calls) == 4


def test_a_missing_entry_under_a_sound_clock_is_a_miss_for_the_caller_to_count(key: EntryKey) -> None:
    _, result = drive(lookup.peek(env(), key), [[0, 1, None, CLOCK]])
    assert result == Lookup(None, Seen("e1", 7, 3), MISS, result.tally)
    assert result.tally is not None and result.tally[1].startswith(b"misses:")


def test_a_cluster_peek_reads_no_index(key: EntryKey) -> None:
    ops, _ = drive(lookup.peek(env(cluster=True), key), [[0, None, CLOCK]])
    assert [c.args[0] for c in ops[0].calls] == ["HINCRBY", "GET", "HMGET"]


@pytest.mark.parametrize(
    "replies",
    [
        pytest.param([0, 0, value(), CLOCK], id="tree not listed in the index"),
        pytest.param([0, 1, value(invalidations=2), CLOCK], id="written before the latest invalidation"),
        pytest.param([0, 1, value(era="e0"), CLOCK], id="another era"),
        pytest.param([0, 1, value(), [None, None, None]], id="no clock"),
        pytest.param([0, 1, value(), [b"e1", b"7", b"1.5"]], id="a counter that is not one"),
        pytest.param([0, 1, value(), [b"e-1", b"7", b"3"]], id="an era that is not ours"),
        pytest.param([0, 1, b"garbage", CLOCK], id="a value not of our format"),
        pytest.param([0, 1, value()[:-3], CLOCK], id="a body that does not decode"),
        pytest.param(ResponseError("WRONGTYPE Operation against a key"), id="an error reply"),
    ],
)
def test_anything_unusual_goes_to_the_script(key: EntryKey, replies: Any) -> None:
    ops, result = drive(lookup.peek(env(), key), [replies, [MISS, b"e1 7 3"]])
    assert isinstance(ops[-1], Eval) and ops[-1].script.name == "lookup"
    assert result.tally is None  # the script counted it


@pytest.mark.parametrize("error", [ConnectionError("gone"), ReadOnlyError("READONLY replica")])
def test_a_standalone_backend_error_is_raised_as_the_scripts_would_be(
    key: EntryKey, error: Exception
) -> None:
    with pytest.raises(type(error)):
        drive(lookup.peek(env(), key), [error])


@pytest.mark.parametrize("error", [ConnectionError("failed over"), MovedError("3999 127.0.0.1:7001")])
def test_in_a_cluster_any_error_goes_to_the_script_which_follows_the_slot(
    key: EntryKey, error: Exception
) -> None:
    ops, result = drive(lookup.peek(env(cluster=True), key), [error, [MISS, b"e1 7 3"]])
    assert isinstance(ops[-1], Eval) and result.status == MISS


def test_a_clock_read_again_is_the_same_seen_and_a_changed_one_is_read_anew(key: EntryKey) -> None:
    # Each peek reads the clock; one that reads what the last one read takes its Seen as it is.
    first = drive(lookup.peek(env(), key), [[0, 1, value(), list(CLOCK)]])[1]
    again = drive(lookup.peek(env(), key), [[0, 1, value(), list(CLOCK)]])[1]
    assert again.seen is first.seen and again.status == HIT
    # An invalidation since (its count, or a new era) is read anew: the entry is then the script's.
    for clock, seen in (([b"e1", b"7", b"4"], Seen("e1", 7, 4)), ([b"e2", b"1", b"3"], Seen("e2", 1, 3))):
        ops, result = drive(lookup.peek(env(), key), [[0, 1, value(), clock], [MISS, b"e1 7 3"]])
        assert lookup._clock(clock) == seen
        assert isinstance(ops[-1], Eval)  # not stamped under this clock: the script decides
    # A reply changed after it was read does not change what the memo holds.
    reply = list(CLOCK)
    assert lookup._clock(reply) == Seen("e1", 7, 3)
    reply[2] = b"9"
    assert lookup._clock(list(CLOCK)) == Seen("e1", 7, 3)
    assert lookup._clock(reply) == Seen("e1", 7, 9)
    # Damaged after sound: still refused.
    assert lookup._clock([b"e1", b"7", b"x"]) is None
