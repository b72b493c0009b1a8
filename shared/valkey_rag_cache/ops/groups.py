"""The index of groups (every top-level namespace tree in use): list it, add to it, rebuild it, retire.

Global invalidations visit the groups the index lists, so a group joins it before anything is cached in it,
and a group (re)joining is retired: an invalidation may have skipped it while it was not listed.
"""

from __future__ import annotations

import logging
from typing import Any

from ..keys import glob_escape
from ..scripts import script
from .env import Env, fresh_era
from .requests import Cmd, Eval, Flow, NodeCmd, Primaries, utf8, wrong_type

__all__ = ["add_group", "group_bases", "rebuild_groups", "register", "retire_call"]

log = logging.getLogger("valkey_rag_cache")


def retire_call(env: Env, group: str, force: bool) -> Eval:
    """`register.lua` on the group's clock: start it (or, `force`, retire everything the group held)."""
    s = env.schema
    return Eval(
        script("register"),
        [s.clock(group)],
        [s.token_base(group), fresh_era(), env.token_ttl, "1" if force else "0"],
    )


def group_bases(env: Env) -> Flow[list[str]]:
    """The bases (``prefix:{group}:``) of every group in use (a confined cache's own only).

    Only members spelled exactly as `KeySchema.group_base` writes them are followed (a tampered member
    could name keys outside the prefix); others are removed. An index of the wrong type is rebuilt.
    """
    s = env.schema
    if env.confined_to is not None:
        return [s.group_base(env.confined_to)]
    try:
        members = yield Cmd(("SMEMBERS", s.groups))
    except Exception as exc:
        if not wrong_type(exc):
            raise
        members = yield from rebuild_groups(env)
    bases, foreign = [], []
    for m in members:
        name = utf8(m)
        if name is not None and s.group_of_base(name) is not None:
            bases.append(name)
        else:
            foreign.append(m)
    if foreign:
        log.warning(
            "valkey_rag_cache: ignoring and removing %d invalid members of %s", len(foreign), s.groups
        )
        yield Cmd(("SREM", s.groups, *foreign))
    return sorted(bases)


def add_group(env: Env, group: str) -> Flow[bool]:
    """Add a group to the index of groups (rebuilt first when it has the wrong type); True when new."""
    s = env.schema
    base = s.group_base(group)
    try:
        added = yield Cmd(("SADD", s.groups, base))
    except Exception as exc:
        if not wrong_type(exc):
            raise
        yield from rebuild_groups(env)
        added = yield Cmd(("SADD", s.groups, base))
    return bool(int(added))


def rebuild_groups(env: Env) -> Flow[list[str]]:
    """Replace an index of groups of the wrong type with the groups whose clocks a SCAN finds.

    A group without a clock needs no member: its next lookup or write registers it and retires what it held.
    """
    s = env.schema
    found: list[str] = []
    nodes = yield Primaries()
    for node in nodes:
        cursor: Any = 0
        while True:
            pattern = glob_escape(s.prefix) + ":{*}:clock"
            cursor, keys = yield NodeCmd(("SCAN", cursor, "MATCH", pattern, "COUNT", 1000), node=node)
            for raw in keys:
                parts = s.parse_group_key(utf8(raw) or "")
                if parts and parts[1] == "clock" and s.group_of_base(parts[0]) is not None:
                    found.append(parts[0])
            if int(cursor) == 0:
                break
    log.warning("valkey_rag_cache: %s was not a set; rebuilt it with %d groups", s.groups, len(found))
    yield Eval(script("rebuild_groups"), [s.groups], list(found))
    return found


def register(env: Env, group: str) -> Flow[bool]:
    """List a tree in the index of groups, so global invalidations reach it (for trees used confined).

    A tree listed anew is retired: an invalidation may have skipped it while it was not listed.
    """
    added = yield from add_group(env, group)
    if added:
        yield retire_call(env, group, force=True)
    return added
