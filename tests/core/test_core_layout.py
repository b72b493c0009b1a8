"""The key layout, the entry envelope and the packed arguments have one definition on each side (Python and
Lua); these tests run the Lua side (on fakeredis's Lua) and check both agree.
"""

from __future__ import annotations

import dataclasses
import re
from importlib import resources
from typing import Any

import fakeredis
import pytest

from valkey_rag_cache import AnswerCache
from valkey_rag_cache.envelope import body_of, decode_body, encode_body, entry, header
from valkey_rag_cache.keys import GroupKeys, KeySchema, source_digest
from valkey_rag_cache.ops.lookup import LookupArgs
from valkey_rag_cache.ops.write import WriteArgs
from valkey_rag_cache.scripts import helpers, script

COMMON = "\n\n".join(text for _, text in helpers())  # all of common.lua


@pytest.fixture
def raw() -> Any:
    return fakeredis.FakeValkey(server=fakeredis.FakeServer())


def lua(raw: Any, body: str, *args: Any) -> Any:
    return raw.eval(COMMON + "\n" + body, 0, *args)


def lua_list(name: str) -> list[str]:
    found = re.search(rf"local {name} = \{{(.*?)\}}", COMMON, re.S)
    assert found, f"{name} is not defined in common.lua"
    return re.findall(r"'([a-z_]+)'", found.group(1))


def test_lua_names_a_trees_keys_as_group_keys_does(raw: Any) -> None:
    base = KeySchema("p").group_base("docs é")
    names = lua(
        raw,
        "local g = group_keys(ARGV[1]) return {g.clock, g.stats, g.nss, g.tokens, g.deps, g.entries}",
        base,
    )
    py = GroupKeys.of(base)
    assert [n.decode() for n in names] == [py.clock, py.stats, py.nss, py.tokens, py.deps, py.entries]


def write_fields() -> tuple[str, list[str]]:
    """write.lua's first statement, which names the fields of its packed argument, and those names."""
    text = resources.files("valkey_rag_cache").joinpath("lua", "write.lua").read_text()
    found = re.search(r"^local ([\w,\s]+?), rest = string\.match\(ARGV\[1\],\s*'(.*?)'\)", text, re.M)
    assert found, "write.lua does not read its packed fields in one match"
    names = re.findall(r"\w+", found.group(1))
    assert found.group(2).count("(%S+)") == len(names)  # one capture per field
    return found.group(0), names


def test_packed_arguments_have_the_same_fields_on_both_sides() -> None:
    assert lua_list("LOOKUP_ARGS") == [f.name for f in dataclasses.fields(LookupArgs)]
    assert write_fields()[1] == [name for name in WriteArgs._fields if name != "sources"]


@pytest.mark.parametrize("sources", [("s1", "s2"), ()])
def test_lua_unpacks_what_python_packs(raw: Any, sources: tuple[str, ...]) -> None:
    args = WriteArgs("p:{d}:", "d:x", 60, "-", 0, 0, "e1", "dig", 90, "1", "0", sources)
    statement, names = write_fields()
    got = raw.eval(f"{statement} return {{{', '.join(names)}, rest}}", 0, args.pack())
    assert [g.decode() for g in got] == [str(getattr(args, n)) for n in names] + [" ".join(sources)]
    lookup_args = LookupArgs("p:{d}:", "p:{d}:t:", "e1", "0", 90)
    got = lua(
        raw,
        "local a = unpack_args(ARGV[1], LOOKUP_ARGS) local out = {} "
        "for i, n in ipairs(LOOKUP_ARGS) do out[i] = a[n] end return out",
        lookup_args.pack(),
    )
    assert [g.decode() for g in got] == [str(v) for v in dataclasses.astuple(lookup_args)]


def test_the_envelope_lua_writes_is_the_one_envelope_py_describes(raw: Any) -> None:
    cache = AnswerCache(client=raw, prefix="p", namespace="docs:tech")
    key = cache.key("qa", 1)
    assert cache.lookup(key) is None and cache.store(key, {"a": 1}, ["kb.md"])
    stored = raw.get(cache.schema.entry(key))
    head = header(stored)
    tree = cache.schema.tree("docs")
    clock = raw.hgetall(tree.clock)
    assert head is not None and head.era == clock[b"e"].decode() and head.invalidations == int(clock[b"i"])
    assert [s for s, _ in head.deps] == ["a", "n:docs", "n:docs:tech", "s:" + source_digest("kb.md")]
    for suffix, token in head.deps:
        assert raw.get(tree.token(suffix)).decode() == token
    assert stored == entry(head.era, head.invalidations, list(head.deps), body_of(stored))
    body = decode_body(body_of(stored))
    assert body is not None and body.value == {"a": 1} and body.sources == ("kb.md",)


def test_lua_reads_the_envelope_envelope_py_writes(raw: Any) -> None:
    cache = AnswerCache(client=raw, prefix="p", namespace="docs")
    key = cache.key("qa", 1)
    assert cache.lookup(key) is None and cache.store(key, "x", ["kb.md"])
    head = header(raw.get(cache.schema.entry(key)))
    assert head is not None
    name = cache.schema.entry(key)
    # An entry written under an older invalidation count: the script compares its tokens one by one.
    current = entry(
        head.era, head.invalidations - 1, list(head.deps), encode_body("from python", (), None, 1.0)
    )
    raw.set(name, current)
    hit = cache.lookup(key)
    assert hit is not None and hit.value == "from python"
    stale = [(s, t + "0") if s == "a" else (s, t) for s, t in head.deps]
    raw.set(name, entry(head.era, head.invalidations - 1, stale, encode_body("old", (), None, 1.0)))
    assert cache.lookup(key) is None
    assert cache.stats()["totals"]["stale"] == 1


def _words(text: str) -> set[str]:
    return set(re.findall(r"[A-Za-z_]\w*", re.sub(r"--[^\n]*", "", text)))


@pytest.mark.parametrize(
    "name",
    sorted(
        p.name[:-4]
        for p in resources.files("valkey_rag_cache").joinpath("lua").iterdir()
        if p.name.endswith(".lua") and p.name != "common.lua"
    ),
)
def test_each_script_carries_every_helper_it_names_and_loads(name: str) -> None:
    # A script carries only the common.lua helpers it (or a helper it carries) names: every name of a helper
    # in its code is defined in it, above its body; nothing else of common.lua is. And the server compiles it.
    source = script(name).source
    defined = {n for names, text in helpers() if text in source for n in names}
    every = {n for names, _ in helpers() for n in names}
    assert every & _words(source) <= defined
    assert defined < every  # never the whole file: the point of choosing
    server = fakeredis.FakeValkey(server=fakeredis.FakeServer())
    assert server.script_load(source) == script(name).sha
