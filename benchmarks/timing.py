"""Interleaved rounds: every case runs N ops per round, cases rotate their order, medians are reported.

A case times each op on its own (``perf_counter_ns``), so untimed set-up per op (a fresh key, the lookup
that precedes an update) stays out of the figure. Rounds are cut into slices in which every case runs a few
ops, so all cases are measured side by side. A round's figure is the median op; a case's figure is the
median of its rounds, and a ratio is the median of the per-round ratios, so both sides of a ratio always
come from the same stretch of time on a shared machine.

Example:
    >>> cases = [Case("noop", lambda i: None)]
    >>> rounds = run_rounds(cases, rounds=3, ops=10)
    >>> len(rounds["noop"])
    3
    >>> depth = contextvars.ContextVar("depth", default=0)  # what a case's own context keeps, slice to slice
    >>> got: list[int] = []
    >>> kept = Case("kept", lambda i: got.append(depth.get()), setup=lambda: depth.set(512))
    >>> _ = run_rounds([kept, *cases], rounds=2, ops=16)
    >>> set(got), depth.get()
    ({512}, 0)
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Case", "ACase", "run_rounds", "median", "ratio", "Rounds"]

Rounds = dict[str, list[float]]  # case name -> per-round median seconds per op


@dataclass
class Case:
    """A sync case: ``op(prepare(i))`` is timed; ``prepare`` (untimed) defaults to passing ``i`` through.

    A case with a ``setup`` measures what a context holds: ``setup()`` runs once, untimed, in a context of
    the case's own, and every op of the case runs in that same context (not in a fresh one per slice).
    """

    name: str
    op: Callable[[Any], Any]
    prepare: Callable[[int], Any] | None = None
    setup: Callable[[], Any] | None = None
    context: contextvars.Context | None = field(default=None, init=False, repr=False)

    def run(self, ops: int, start: int) -> list[int]:
        if self.setup is not None and self.context is None:
            self.context = contextvars.Context()
            self.context.run(self.setup)
        if self.context is not None:
            return self.context.run(self._run, ops, start)
        return self._run(ops, start)

    def _run(self, ops: int, start: int) -> list[int]:
        op, prepare = self.op, self.prepare
        out = []
        clock = time.perf_counter_ns
        for i in range(start, start + ops):
            arg = prepare(i) if prepare else i
            t0 = clock()
            op(arg)
            out.append(clock() - t0)
        return out


@dataclass
class ACase:
    """An asyncio case, run on the harness's one event loop (clients are bound to it)."""

    name: str
    op: Callable[[Any], Awaitable[Any]]
    prepare: Callable[[int], Awaitable[Any]] | None = None
    loop: asyncio.AbstractEventLoop | None = None

    def run(self, ops: int, start: int) -> list[int]:
        assert self.loop is not None, "ACase needs the harness's event loop"
        return self.loop.run_until_complete(self._run(ops, start))

    async def _run(self, ops: int, start: int) -> list[int]:
        op, prepare = self.op, self.prepare
        out = []
        clock = time.perf_counter_ns
        for i in range(start, start + ops):
            arg = (await prepare(i)) if prepare else i
            t0 = clock()
            await op(arg)
            out.append(clock() - t0)
        return out


def run_rounds(
    cases: Sequence[Case | ACase], rounds: int, ops: int, warmup: int | None = None, slices: int = 8
) -> Rounds:
    """Run every case `ops` times per round, rotating their order; returns per-round medians (seconds).

    A round is cut into `slices`: every case runs `ops / slices` ops in each slice, so the two sides of a
    ratio are measured a few milliseconds apart, not a whole round apart, on a machine whose load drifts.
    """
    warm = max(1, ops // 5) if warmup is None else warmup
    counters = {c.name: 0 for c in cases}
    chunk = max(1, ops // max(1, slices))

    def one(case: Case | ACase, n: int) -> list[int]:
        # Each case runs in a clean context: what one case leaves in context variables (the core's record
        # of what lookups saw) must not slow down the next one; a case with a `setup` then enters its own
        # context, which keeps what the setup left there. No collection pauses inside a case.
        gc.disable()
        try:
            samples = contextvars.Context().run(case.run, n, counters[case.name])
        finally:
            gc.enable()
        counters[case.name] += n
        return samples

    for case in cases:
        if warm:
            one(case, warm)
    out: Rounds = {c.name: [] for c in cases}
    for r in range(rounds):
        gc.collect()
        samples: dict[str, list[int]] = {c.name: [] for c in cases}
        for sl in range(max(1, ops // chunk)):
            shift = (r * slices + sl) % len(cases) if cases else 0
            for case in [*cases[shift:], *cases[:shift]]:
                samples[case.name] += one(case, chunk)
        for name, values in samples.items():
            out[name].append(statistics.median(values) / 1e9)
    return out


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def ratio(num: Sequence[float], den: Sequence[float]) -> float:
    """Median of per-round ratios (both sides measured in the same round)."""
    pairs = [a / b for a, b in zip(num, den, strict=False) if b]
    return median(pairs)
