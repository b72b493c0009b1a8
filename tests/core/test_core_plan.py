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


def test_a_pipeline_reloads_its_scripts_once_after_noscript() -> None:
    rnd = PipelineRound([LOOKUP, Cmd(("UNLINK", "k"))])
    first = rnd.commands()
    assert first[0][0] == "EVALSHA" and first[1] == ("UNLINK", "k")
    assert rnd.reload([1, 1]) == set()  # no NOSCRIPT: the replies are final
    assert rnd.reload([NoScriptError("NOSCRIPT"), 1]) == {LOOKUP.script}
    assert rnd.commands()[0][0] == "EVALSHA"  # sent again once the scripts are loaded
    assert rnd.reload([NoScriptError("NOSCRIPT"), 1]) == set()  # never a third time


def test_a_refused_script_load_sends_the_scripts_as_eval() -> None:
    rnd = PipelineRound([LOOKUP])
    rnd.commands()
    assert rnd.reload([NoScriptError("NOSCRIPT")])
    rnd.refused_load()
    assert rnd.commands() == [eval_command(LOOKUP)]


def test_a_fan_out_goes_to_each_node_once_in_order() -> None:
    calls = [
        Eval(script("invalidate"), ["p:{a}:clock"], []),
        Cmd(("HGETALL", "p:{b}:stats")),
        Cmd(("GET", "p:{a}:x")),
    ]
    groups = by_node(calls, lambda key: "node-" + key.split("{")[1][0])
    assert [(node, [i for i, _ in items]) for node, items in groups] == [("node-a", [0, 2]), ("node-b", [1])]
