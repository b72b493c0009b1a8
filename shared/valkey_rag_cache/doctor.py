"""`doctor()`: reads the server's memory settings where allowed and names what breaks the cache."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["DoctorReport", "diagnose"]


@dataclass
class DoctorReport:
    """What the cache found about the server it runs on.

    Example:
        >>> report = cache.doctor()  # doctest: +SKIP
        >>> report.ok, report.problems  # doctest: +SKIP
        (True, [])
    """

    cluster: bool
    maxmemory_policy: str | None = None
    maxmemory: int | None = None
    used_memory: int | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        lines = [
            f"cluster: {self.cluster}",
            f"maxmemory-policy: {self.maxmemory_policy or 'unknown'}",
            f"maxmemory: {self.maxmemory if self.maxmemory is not None else 'unknown'}",
            f"used_memory: {self.used_memory if self.used_memory is not None else 'unknown'}",
        ]
        lines += [f"PROBLEM: {p}" for p in self.problems] + [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def diagnose(infos: list[Any], cluster: bool, keys_without_ttl: int) -> DoctorReport:
    """Build the report from each primary's ``INFO memory`` (the error instead where INFO failed)."""
    report = DoctorReport(cluster=cluster)
    readable = [i for i in infos if isinstance(i, dict)]
    if not readable:
        refused = next((i for i in infos if isinstance(i, BaseException)), None)
        if refused is None or "NOPERM" in str(refused) or "permission" in str(refused).lower():
            why = "INFO not permitted for this user"
        else:
            why = f"INFO failed ({type(refused).__name__})"
        report.notes.append(
            f"{why}: maxmemory-policy, maxmemory and used_memory unknown, so eviction settings were not "
            "checked (grant +info, or check them in the service's console)"
        )
        return report
    info = {(_text(k)): v for k, v in readable[0].items()}
    policy = _text(info.get("maxmemory_policy", "")) or None
    maxmemory = int(info.get("maxmemory", 0) or 0)
    report.maxmemory_policy, report.maxmemory = policy, maxmemory
    report.used_memory = sum(int(i.get("used_memory", 0) or 0) for i in readable)
    if maxmemory == 0:
        if policy == "noeviction":
            report.problems.append(
                "no maxmemory with noeviction: nothing bounds the cache but TTLs; set maxmemory and "
                "maxmemory-policy volatile-lru (or allkeys-lru)"
            )
        else:
            report.notes.append("no maxmemory set: LRU never runs; entries leave only by TTL")
    elif policy == "noeviction":
        report.problems.append(
            "maxmemory with noeviction: once full, every cache write fails (they are dropped and counted); "
            "use volatile-lru"
        )
    if policy and policy.startswith("volatile-") and keys_without_ttl:
        report.problems.append(
            f"{keys_without_ttl} key(s) under the cache prefix have no TTL besides its small index keys: "
            "under a volatile-* policy they can never be evicted"
        )
    if policy and policy.startswith("allkeys-"):
        if cluster:
            report.problems.append(
                "allkeys-* in a cluster: the small index of top-level namespaces can be evicted, and an "
                "invalidation may then miss a namespace until its entries expire; prefer volatile-lru"
            )
        else:
            report.notes.append(
                "allkeys-* on a standalone server is safe: a namespace whose index entry was evicted is "
                "retired on its next lookup"
            )
    return report
