"""The one rule of `seen`: a lookup's view belongs to the context that made it; O(1) per call.

Pure tests of the module (no server), then the rule through `AnswerCache` on fakeredis.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest

from valkey_rag_cache import seen
from valkey_rag_cache.seen import PER_CONTEXT, UNREACHED, Seen, peek, remember, take


def fresh(fn: Callable[[], Any]) -> Any:
    """Run `fn` in an empty context, so one test's views are not another's."""
    return contextvars.Context().run(fn)


def ident(i: int, ns: str = "docs") -> tuple[int, str, str]:
    return (7, ns, f"d{i}")


V1, V2 = Seen("era", 1, 0), Seen("era", 2, 0)


def test_a_view_is_taken_once_and_a_hit_drops_it() -> None:
    def body() -> None:
        remember(ident(1), V1, hit=False)
        assert take(ident(1)) == V1 and take(ident(1)) is None
        remember(ident(2), V1, hit=False)
        remember(ident(2), V2, hit=True)
        assert take(ident(2)) is None

    fresh(body)


def test_the_newest_view_of_a_key_wins() -> None:
    def body() -> None:
        remember(ident(1), V1, hit=False)
        remember(ident(1), V2, hit=False)
        assert take(ident(1)) == V2

    fresh(body)


def test_a_lookup_that_did_not_reach_valkey_leaves_unreached() -> None:
    def body() -> None:
        remember(ident(1), None, hit=False)
        view = take(ident(1))
        assert view is UNREACHED and not view.reached

    fresh(body)


def test_asyncio_tasks_read_their_origin_but_never_take_or_change_it() -> None:
    async def main() -> None:
        remember(ident(1), V1, hit=False)  # the parent's lookup

        async def child() -> tuple[Seen | None, Seen | None]:
            got = take(ident(1))  # the store after the parent's miss, in a task
            remember(ident(2), V2, hit=False)  # the task's own lookup
            return got, take(ident(2))

        assert await asyncio.create_task(child()) == (V1, V2)
        assert peek(ident(1)) == V1, "a task took its origin's view"
        assert peek(ident(2)) is None, "a task's own view leaked into its origin"

        # Two tasks looking up the same key keep their own views.
        async def looks(view: Seen) -> Seen | None:
            remember(ident(3), view, hit=False)
            await asyncio.sleep(0)
            return take(ident(3))

        assert await asyncio.gather(looks(V1), looks(V2)) == [V1, V2]

    fresh(lambda: asyncio.run(main()))


def test_a_thread_given_a_copy_of_the_context_keeps_its_own_views() -> None:
    def body() -> None:
        remember(ident(1), V1, hit=False)
        out: list[Any] = []
        copy = contextvars.copy_context()

        def worker() -> None:
            out.append(take(ident(1)))
            remember(ident(1), V2, hit=False)
            out.append(take(ident(1)))

        thread = threading.Thread(target=copy.run, args=(worker,))
        thread.start()
        thread.join()
        assert out == [V1, V2]
        assert take(ident(1)) == V1  # the parent's own view is still there, unchanged

    fresh(body)


def test_pending_counts_this_contexts_own_views_only() -> None:
    def body() -> None:
        assert seen.pending() == 0
        for i in range(3):
            remember(ident(i), V1, hit=False)
        remember(ident(0), V2, hit=True)  # a hit drops its view
        take(ident(1))  # a write takes its view
        assert seen.pending() == 1
        copy = contextvars.copy_context()
        assert copy.run(seen.pending) == 0  # a copy reads its origin's views; it holds none of its own
        assert copy.run(lambda: (remember(ident(5), V1, hit=False), seen.pending())[1]) == 1
        assert seen.pending() == 1
        for i in range(10, 10 + 2 * PER_CONTEXT):
            remember(ident(i), V1, hit=False)
        assert seen.pending() == PER_CONTEXT  # a context holds the newest PER_CONTEXT views

    fresh(body)


def test_more_lookups_than_a_context_holds_keep_the_oldest_view_per_group_as_a_floor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [100.0]
    monkeypatch.setattr(seen, "_now", lambda: clock[0])

    def body() -> None:
        oldest = Seen("era", 1, 0)
        remember(ident(0), oldest, hit=False)
        for i in range(1, PER_CONTEXT + 1):
            remember(ident(i), Seen("era", 10 + i, 0), hit=False)
        assert peek(ident(0)) is None  # evicted: the context holds PER_CONTEXT views
        assert take(ident(0)) == oldest  # its write is checked against the group's floor
        assert take((7, "docs:sub", "never")) == oldest  # the floor is the group's (top-level namespace)
        assert take((7, "other", "never")) is None
        clock[0] += seen.FLOOR_SECONDS
        assert take(ident(0)) is None  # floors expire

    fresh(body)


def test_a_lookup_and_a_store_with_512_pending_do_constant_work() -> None:
    """No copy of the pending views per call: the record and its dict stay the same objects, and one
    lookup-and-write allocates far less than a copy of 512 views would (a dict of 512 items is ~18 KiB)."""

    def body() -> None:
        for i in range(PER_CONTEXT):
            remember(ident(i), V1, hit=False)
        record = seen._RECORD.get()
        views = record.views
        tracemalloc.start()
        try:
            before = tracemalloc.take_snapshot()
            for i in range(100):  # a miss, its store, and a hit of a pending key: 100 times
                remember(ident(10_000 + i), V2, hit=False)
                assert take(ident(10_000 + i)) == V2
                remember(ident(i), V2, hit=True)
            _, peak = tracemalloc.get_traced_memory()
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        assert seen._RECORD.get() is record and record.views is views
        grown = sum(s.size_diff for s in after.compare_to(before, "filename") if s.size_diff > 0)
        assert peak < 8 * 1024, f"peak {peak} bytes: a copy of the pending views per call?"
        assert grown < 8 * 1024

    fresh(body)


# -- through AnswerCache ------------------------------------------------------------------------------


def test_an_answer_cache_keeps_one_record_per_context_whatever_is_pending(make_cache: Any) -> None:
    cache = make_cache()

    def body() -> None:
        keys = [cache.key("qa", i) for i in range(PER_CONTEXT)]
        for k in keys:
            assert cache.lookup(k) is None
        record = seen._RECORD.get()
        views = record.views
        extra = cache.key("qa", "one more")
        assert cache.lookup(extra) is None
        assert cache.store(extra, "answer")
        assert seen._RECORD.get() is record and record.views is views
        assert len(views) == PER_CONTEXT - 1  # the oldest went to the floor; the store took its own view
        assert cache.seen(keys[0]) is None and cache.seen(keys[-1]) is not None

    fresh(body)
