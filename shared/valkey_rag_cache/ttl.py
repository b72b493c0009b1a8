"""TTL by content type: how long an answer may live, given what it was built from.

An entry lives as long as its most volatile source allows: an answer built on real-time data expires like
real-time data. TTLs never slide: a hit does not extend an entry.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

__all__ = ["STATIC", "DOCUMENTATION", "USER", "REALTIME", "DEFAULT_TTLS", "TTLPolicy", "parse_ttl"]

STATIC = "static"
DOCUMENTATION = "documentation"
USER = "user"
REALTIME = "realtime"

DEFAULT_TTLS: Mapping[str, int] = {
    STATIC: 24 * 3600,
    DOCUMENTATION: 6 * 3600,
    USER: 3600,
    REALTIME: 300,
}

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")

TTLValue = int | float | str | timedelta


def parse_ttl(value: TTLValue) -> int:
    """Seconds from an int, a float, a timedelta or a string such as ``"90s"``, ``"5m"``, ``"6h"``, ``"1d"``.

    >>> parse_ttl("6h"), parse_ttl(timedelta(minutes=5)), parse_ttl(30)
    (21600, 300, 30)
    """
    if isinstance(value, bool):
        raise TypeError("a TTL is a number of seconds, a duration string or a timedelta, not a bool")
    if isinstance(value, timedelta):
        seconds = int(value.total_seconds())
    elif isinstance(value, int | float):
        seconds = int(value)
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(
                f"unreadable TTL {value!r}: use seconds or a string like '90s', '5m', '6h', '1d'"
            )
        seconds = int(match.group(1)) * _UNITS[match.group(2) or "s"]
    else:
        raise TypeError(f"unsupported TTL type {type(value).__name__}")
    if seconds <= 0:
        raise ValueError(f"a TTL must be positive, got {value!r}")
    return seconds


@dataclass(frozen=True)
class TTLPolicy:
    """Maps content types to TTLs in seconds.

    Example:
        >>> policy = TTLPolicy({"realtime": "1m"}, default_content_type="documentation")
        >>> policy.ttl_for(["static", "realtime"])
        60
        >>> policy.ttl_for([])
        21600
    """

    ttls: Mapping[str, TTLValue] = field(default_factory=lambda: dict(DEFAULT_TTLS))
    default_content_type: str = DOCUMENTATION
    _seconds: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        seconds = dict(DEFAULT_TTLS)
        seconds.update({str(k): parse_ttl(v) for k, v in self.ttls.items()})
        if self.default_content_type not in seconds:
            raise ValueError(
                f"default content type {self.default_content_type!r} has no TTL; known: {sorted(seconds)}"
            )
        object.__setattr__(self, "_seconds", seconds)

    @property
    def seconds(self) -> Mapping[str, int]:
        """The resolved table, defaults included."""
        return dict(self._seconds)

    @property
    def max_ttl(self) -> int:
        """The longest TTL this policy can give an entry."""
        return max(self._seconds.values())

    def ttl_of(self, content_type: str | None) -> int:
        """TTL of one content type; unknown types get the default content type's TTL."""
        if content_type is None:
            return self._seconds[self.default_content_type]
        return self._seconds.get(content_type, self._seconds[self.default_content_type])

    def ttl_for(self, content_types: Iterable[str | None], override: TTLValue | None = None) -> int:
        """TTL of an entry built on sources of these content types; an override wins."""
        if override is not None:
            return parse_ttl(override)
        typed = [self.ttl_of(ct) for ct in content_types if ct is not None]
        return min(typed) if typed else self.ttl_of(None)
