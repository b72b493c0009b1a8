"""Pure tests of `plan`: what the sync and async drivers send, decided once (no server, no client)."""

from __future__ import annotations

from valkey.exceptions import NoScriptError

from valkey_rag_cache.ops.requests import Cmd, Eval
from valkey_rag_cache.plan import PipelineRound, by_node, eval_command, evalsha_command, load_command
from valkey_rag_cache.scripts import script

LOOKUP = Eval(script("lookup"), ["p:{d}:e:d:x", "p:{d}:clock"], [b"packed", b"d"])


def test_a_script_call_is_evalsha_then_load_then_eval() -> None:
    sha, source = LOOKUP.script.sha, LOOKUP.script.source
    assert evalsha_command(LOOKUP) == ("EVALSHA", sha, 2, "p:{d}:e:d:x", "p:{d}:clock", b"packed", b"d")
    assert load_command(LOOKUP) == ("SCRIPT", "LOAD", source)
    assert eval_command(LOOKUP) == ("EVAL", source, 2, "p:{d}:e:d:x", "p:{d}:clock", b"packed", b"d")


def test_a_pipeline_without_noscript_is_sent_once() -> None:
    rnd = PipelineRound([LOOKUP, Cmd(("UNLINK", "k"))])
    first = rnd.commands()
    assert first[0][0] == "EVALSHA" and first[1] == ("UNLINK", "k")
    assert rnd.reload([1, 1]) == set() and rnd.replies == [1, 1]


def test_after_noscript_only_the_calls_that_met_it_are_sent_again_once() -> None:
    counted = Cmd(("HINCRBY", "p:{d}:stats", "bad:d", 1))
    rnd = PipelineRound([LOOKUP, counted, LOOKUP])
    rnd.commands()
    missing = NoScriptError("NOSCRIPT")
    assert rnd.reload([missing, 1, missing]) == {LOOKUP.script}
    again = rnd.commands()
    assert again == [evalsha_command(LOOKUP), evalsha_command(LOOKUP)]  # the counter ran: never twice
    assert rnd.reload([missing, "ok"]) == set()  # never a third time: the reply is final
    assert rnd.replies == [missing, 1, "ok"]


def test_a_refused_script_load_sends_the_scripts_as_eval() -> None:
    rnd = PipelineRound([LOOKUP])
    rnd.commands()
    assert rnd.reload([NoScriptError("NOSCRIPT")])
    rnd.refused_load()
    assert rnd.commands() == [eval_command(LOOKUP)]
    assert rnd.reload(["ran"]) == set() and rnd.replies == ["ran"]


def test_a_fan_out_goes_to_each_node_once_in_order() -> None:
    calls = [
        Eval(script("invalidate"), ["p:{a}:clock"], []),
        Cmd(("HGETALL", "p:{b}:stats")),
        Cmd(("GET", "p:{a}:x")),
    ]
    groups = by_node(calls, lambda key: "node-" + key.split("{")[1][0])
    assert [(node, [i for i, _ in items]) for node, items in groups] == [("node-a", [0, 2]), ("node-b", [1])]
