"""Choosing a similarity threshold from labelled pairs, for a target rate of wrong answers.

A labelled pair is (cached question, new question, whether one answer is right for both). Its *score* is
what the semantic cache would see: the cosine similarity of the two embeddings, or ``-inf`` when the guard
refuses the pair. Serving the pairs that score at or above a threshold, the *wrong-answer rate* is the share
of should-not-hit pairs (traps) served, and the *served* share is the share of should-hit pairs served.
`calibrate` picks the lowest threshold whose wrong-answer rate is within the target, which serves the most.

Example:
    >>> cal = calibrate([0.99, 0.95, 0.93, 0.91, 0.80], [True, True, False, True, False], max_wrong=0.0)
    >>> cal.threshold, cal.served, cal.wrong
    (0.94, 0.6666666666666666, 0.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .guard import LookalikeGuard
from .vectors import as_unit_vector

__all__ = ["Calibration", "calibrate", "pair_scores", "rates_at"]


@dataclass(frozen=True, slots=True)
class Calibration:
    """A threshold and what it does on the pairs it was chosen on."""

    threshold: float
    served: float  # share of should-hit pairs served
    wrong: float  # share of should-not-hit pairs served (wrong answers)


def rates_at(scores: Sequence[float], should_hit: Sequence[bool], threshold: float) -> Calibration:
    hits = [s >= threshold for s in scores]
    pos = sum(1 for h in should_hit if h) or 1
    neg = sum(1 for h in should_hit if not h) or 1
    served = sum(1 for h, y in zip(hits, should_hit, strict=True) if h and y) / pos
    wrong = sum(1 for h, y in zip(hits, should_hit, strict=True) if h and not y) / neg
    return Calibration(threshold, served, wrong)


def calibrate(scores: Sequence[float], should_hit: Sequence[bool], max_wrong: float) -> Calibration:
    """The lowest threshold (midway between two observed scores) whose wrong-answer rate is <= `max_wrong`.

    With no such threshold below the highest score, the threshold is just above it (nothing is served).
    """
    if len(scores) != len(should_hit) or not scores:
        raise ValueError("calibrate() needs as many labels as scores, and at least one of each")
    finite = sorted({float(s) for s in scores if math.isfinite(s)}, reverse=True)
    if not finite:
        return Calibration(1.0, 0.0, 0.0)
    best = Calibration(round(min(1.0, finite[0] + 1e-6), 6), 0.0, 0.0)
    # Candidate thresholds: midway between consecutive distinct scores, from the top down.
    for upper, lower in zip(finite, [*finite[1:], finite[-1] - 1e-3], strict=True):
        t = round((upper + lower) / 2, 6)
        cal = rates_at(scores, should_hit, t)
        if cal.wrong > max_wrong:
            break
        best = cal
    return best


def pair_scores(
    pairs: Iterable[tuple[str, str]],
    embed: Callable[[str], Sequence[float]],
    guard: LookalikeGuard | None = None,
) -> list[float]:
    """Each pair's score as the cache sees it: cosine similarity, or -inf when the guard refuses it."""
    memo: dict[str, np.ndarray | None] = {}

    def unit(text: str) -> np.ndarray | None:
        if text not in memo:
            memo[text] = as_unit_vector(embed(text), None)[0]
        return memo[text]

    out = []
    for cached, new in pairs:
        a, b = unit(cached), unit(new)
        if (
            a is None
            or b is None
            or a.size != b.size
            or (guard is not None and not guard.compatible(new, cached))
        ):
            out.append(-math.inf)
        else:
            out.append(float(a @ b))
    return out
