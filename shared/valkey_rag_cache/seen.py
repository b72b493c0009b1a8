"""What a lookup saw of its group's clock, so the write after a miss can refuse an overtaken answer.

Example:
    >>> Seen("a1b2", 3, 1).reached, UNREACHED.reached
    (True, False)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["UNREACHED", "Seen"]


@dataclass(frozen=True, slots=True)
class Seen:
    """The group clock as a lookup read it; a write that follows checks nothing newer was invalidated."""

    era: str
    counter: int
    invalidations: int

    @property
    def reached(self) -> bool:
        """False for `UNREACHED`: the lookup never read the clock, so nothing can check a write against it."""
        return bool(self.era)


# What a lookup that did not reach Valkey saw (timeout, refused connection, the back-off after a failure, a
# script error). An era is never empty, so no clock matches it; a write carrying it is refused.
UNREACHED = Seen("", 0, 0)
