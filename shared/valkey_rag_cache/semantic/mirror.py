"""`MirrorIndex`: vectors in Valkey beside their entries, searched in a numpy mirror in each process.

Per exact partition, in the slot of its namespace tree (keys from `KeySchema`):

- a hash ``v:<ns>:<partition>``: entry digest -> record (question and vector, see `vectors`); the truth;
- a stream ``vl:<ns>:<partition>``: one small item per change (``+`` or ``-`` and the digest), trimmed to
  about `log_length` items; the log that lets each process's mirror catch up incrementally.

Each search first reads the log from the last item the mirror applied (one ``XRANGE``; an ``HMGET`` for the
records of new digests). When that item is gone (the stream was trimmed past it, expired or evicted), the
mirror is rebuilt from the hash (``HSCAN``). Both keys carry the TTL of the longest-lived entry and are
refreshed by every write; losing them only costs misses until entries are written again.

Example:
    >>> index = MirrorIndex()  # shared by every SemanticCache that should share mirrors (one per process)
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from ..ops.env import Env
from ..ops.requests import Cmd, FanOut, Flow
from .index import Candidate, Partition, SemanticIndex
from .vectors import decode_record, encode_record

__all__ = ["MirrorIndex", "PartitionMirror"]

_START = "0-0"
# Below this many rows a search reads every vector (0.04 ms at 1k, ~0.3 ms at 10k on an idle machine); from
# it on, a coarse quantizer (spherical k-means over a sample, about sqrt(n) lists, the matrix reordered so
# each list is one contiguous block) sends each search to the few lists whose centroids are nearest, plus
# the rows added since training (trained again when they pass an eighth): a tenth to a fifth of the vectors.
# It is approximate: the nearest cached question can sit in a list that was not probed, which costs a miss,
# never a wrong hit.
COARSE_FROM = 20_000


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class PartitionMirror:
    """One partition's vectors in a float32 matrix (a row per cached question), searched by dot product."""

    def __init__(self, coarse_from: int = COARSE_FROM) -> None:
        self.coarse_from = coarse_from
        self._centroids: np.ndarray | None = None
        self._offsets = np.zeros(1, dtype=np.int64)  # list c holds rows offsets[c]:offsets[c + 1]
        self._sorted = 0  # rows below this are ordered by list; rows above are newer (read in full)
        self.lock = threading.Lock()
        self.synced = False  # False until the first rebuild from the hash
        self.last_id = _START  # the last log item applied ("0-0": the log was empty at the rebuild)
        self.dimension: int | None = None
        self._matrix = np.zeros((0, 0), dtype=np.float32)
        self._alive = np.zeros(0, dtype=bool)
        self._questions: list[str] = []
        self._digests: list[str] = []
        self._rows: dict[str, int] = {}
        self._n = 0

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def nbytes(self) -> int:
        """Memory of the matrix and row bookkeeping (approximate for the Python objects)."""
        texts = sum(len(q) + len(d) + 120 for q, d in zip(self._questions, self._digests, strict=True))
        coarse = 0 if self._centroids is None else self._centroids.nbytes + self._offsets.nbytes
        return int(self._matrix.nbytes + self._alive.nbytes + texts + coarse)

    def upsert(self, digest: str, question: str, vec: np.ndarray) -> None:
        if self.dimension is None:
            self.dimension = int(vec.size)
            self._matrix = np.zeros((16, self.dimension), dtype=np.float32)
            self._alive = np.zeros(16, dtype=bool)
        if vec.size != self.dimension:
            return  # another embedder's vector (a misconfiguration): never comparable, so never a candidate
        row = self._rows.get(digest)
        if row is None:
            if self._n == len(self._alive):
                self._grow()
            row = self._n
            self._n += 1
            self._rows[digest] = row
            self._questions.append(question)
            self._digests.append(digest)
        else:
            self._questions[row] = question
        self._matrix[row] = vec
        self._alive[row] = True
        # (A row rewritten in place keeps its list: a changed vector may then be missed, never misread.)
        if self._n >= self.coarse_from and self._n - self._sorted > max(self.coarse_from // 4, self._n // 8):
            self._train()

    def loaded(self, coarse_from: int) -> None:
        """After a bulk load with lists off (``coarse_from`` huge): train them once, over every row."""
        self.coarse_from = coarse_from
        if self._n >= coarse_from:
            self._train()

    def remove(self, digest: str) -> None:
        row = self._rows.pop(digest, None)
        if row is not None:
            self._alive[row] = False
            self._matrix[row] = 0.0
            if self._n > 64 and len(self._rows) < self._n // 2:
                self._compact()

    def search(self, vec: np.ndarray, k: int, floor: float) -> list[Candidate]:
        if not self._rows or vec.size != self.dimension:
            return []
        if self._centroids is None:
            rows = np.arange(self._n)
            scores = self._matrix[: self._n] @ vec
        else:
            near = self._centroids @ vec
            probe = max(8, len(near) // 16)
            lists = np.argpartition(-near, probe)[:probe] if probe < len(near) else np.arange(len(near))
            spans = [(int(self._offsets[c]), int(self._offsets[c + 1])) for c in lists]
            spans.append((self._sorted, self._n))
            rows = np.concatenate([np.arange(a, b) for a, b in spans])
            scores = np.concatenate([self._matrix[a:b] @ vec for a, b in spans])
        scores[~self._alive[rows]] = -2.0
        top = np.argpartition(-scores, k)[:k] if k < len(rows) else np.arange(len(rows))
        top = top[np.argsort(-scores[top], kind="stable")]
        return [
            Candidate(self._questions[rows[i]], float(scores[i]), self._digests[rows[i]])
            for i in top
            if scores[i] >= floor
        ]

    def _train(self, iterations: int = 6) -> None:
        """Spherical k-means over a sample of the live rows; then the live rows reordered by nearest list."""
        live = np.flatnonzero(self._alive[: self._n])
        nlist = int(min(1024, max(16, np.sqrt(len(live)))))
        rng = np.random.default_rng(len(live))
        sample = self._matrix[rng.choice(live, size=min(len(live), 16 * nlist), replace=False)]
        centroids = sample[:nlist].copy()
        for _ in range(iterations):
            nearest = np.argmax(sample @ centroids.T, axis=1)
            sums = np.zeros_like(centroids)
            np.add.at(sums, nearest, sample)
            norms = np.linalg.norm(sums, axis=1, keepdims=True)
            centroids = np.where(norms > 0, sums / np.maximum(norms, 1e-12), centroids).astype(np.float32)
        assign = np.concatenate(
            [
                np.argmax(self._matrix[live[i : i + 8192]] @ centroids.T, axis=1)
                for i in range(0, len(live), 8192)
            ]
        )
        order = live[np.argsort(assign, kind="stable")]
        self._matrix[: len(order)] = self._matrix[order]
        self._alive[:] = False
        self._alive[: len(order)] = True
        self._questions = [self._questions[i] for i in order]
        self._digests = [self._digests[i] for i in order]
        self._rows = {d: i for i, d in enumerate(self._digests)}
        self._n = self._sorted = len(order)
        self._offsets = np.searchsorted(np.sort(assign), np.arange(nlist + 1)).astype(np.int64)
        self._centroids = centroids

    def _grow(self) -> None:
        size = max(16, 2 * len(self._alive))
        matrix = np.zeros((size, self.dimension or 0), dtype=np.float32)
        matrix[: self._n] = self._matrix[: self._n]
        alive = np.zeros(size, dtype=bool)
        alive[: self._n] = self._alive[: self._n]
        self._matrix, self._alive = matrix, alive

    def _compact(self) -> None:
        keep = [i for i in range(self._n) if self._alive[i]]
        self._matrix[: len(keep)] = self._matrix[keep]
        self._alive[:] = False
        self._alive[: len(keep)] = True
        self._questions = [self._questions[i] for i in keep]
        self._digests = [self._digests[i] for i in keep]
        self._rows = {d: i for i, d in enumerate(self._digests)}
        self._n = len(keep)
        self._centroids, self._sorted = None, 0  # rows moved: the lists are trained again
        if self._n >= self.coarse_from:
            self._train()


class MirrorIndex(SemanticIndex):
    """The shipped index: per-partition numpy mirrors kept in sync from Valkey (no module needed).

    Args:
        log_length: about how many changes each partition's stream keeps; a mirror further behind rebuilds.
        max_partitions: mirrors kept in this process (least recently used are dropped, and rebuilt on use).
        page: items read per ``XRANGE``/``HSCAN`` call.
    """

    def __init__(self, log_length: int = 10_000, max_partitions: int = 1024, page: int = 1000) -> None:
        self.log_length = log_length
        self.max_partitions = max_partitions
        self.page = page
        self._mirrors: OrderedDict[tuple[str, str, str], PartitionMirror] = OrderedDict()
        self._lock = threading.Lock()

    def mirror(self, part: Partition) -> PartitionMirror:
        ident = (part.vectors_key, part.namespace, part.digest)
        with self._lock:
            m = self._mirrors.get(ident)
            if m is None:
                m = self._mirrors[ident] = PartitionMirror()
                while len(self._mirrors) > self.max_partitions:
                    self._mirrors.popitem(last=False)
            else:
                self._mirrors.move_to_end(ident)
            return m

    def drop_mirrors(self) -> None:
        """Forget every mirror of this process (the next search rebuilds from Valkey)."""
        with self._lock:
            self._mirrors.clear()

    # -- SemanticIndex ---------------------------------------------------------------------------------

    def search(self, ctx: Env, part: Partition, vector: np.ndarray, k: int, floor: float) -> Flow[Any]:
        m = self.mirror(part)
        yield from self._sync(part, m)
        with m.lock:
            return m.search(vector, k, floor)

    def add(self, ctx: Env, part: Partition, digest: str, question: str, vector: np.ndarray) -> Flow[Any]:
        ttl = ctx.policy.max_ttl
        yield FanOut(
            [
                Cmd(("HSET", part.vectors_key, digest, encode_record(question, vector))),
                Cmd(("XADD", part.log_key, "MAXLEN", "~", self.log_length, "*", "o", "+", "d", digest)),
                Cmd(("EXPIRE", part.vectors_key, ttl)),
                Cmd(("EXPIRE", part.log_key, ttl)),
            ]
        )

    def forget(self, ctx: Env, part: Partition, digest: str) -> Flow[Any]:
        m = self.mirror(part)
        with m.lock:
            m.remove(digest)
        yield FanOut(
            [
                Cmd(("HDEL", part.vectors_key, digest)),
                Cmd(("XADD", part.log_key, "MAXLEN", "~", self.log_length, "*", "o", "-", "d", digest)),
            ]
        )

    # -- keeping a mirror in step ----------------------------------------------------------------------

    def _sync(self, part: Partition, m: PartitionMirror) -> Flow[Any]:
        with m.lock:
            start, synced = m.last_id, m.synced
        if not synced:
            yield from self._rebuild(part, m)
            return
        adds: dict[str, None] = {}
        removes: set[str] = set()
        first = start != _START  # the first reply must start with the item applied last
        last = start
        while True:
            items = yield Cmd(
                ("XRANGE", part.log_key, last if last != _START else "-", "+", "COUNT", self.page)
            )
            items = list(items or [])
            if first:
                if not items or _text(items[0][0]) != start:
                    # The item we applied last is gone: the stream was trimmed past it, expired or evicted.
                    yield from self._rebuild(part, m)
                    return
                items = items[1:]
                first = False
            elif last != _START and items and _text(items[0][0]) == last:
                items = items[1:]
            for item_id, fields in items:
                op, digest = _fields(fields)
                last = _text(item_id)
                if digest is None:
                    continue
                if op == "-":
                    adds.pop(digest, None)
                    removes.add(digest)
                else:
                    removes.discard(digest)
                    adds[digest] = None
            if len(items) < self.page - 1:
                break
        records: list[Any] = []
        if adds:
            records = yield Cmd(("HMGET", part.vectors_key, *adds))
        with m.lock:
            if m.last_id != start:  # another thread applied the same changes meanwhile
                return
            for digest in removes:
                m.remove(digest)
            for digest, raw in zip(adds, records, strict=True):
                decoded = decode_record(raw) if raw is not None else None
                if decoded is None:
                    m.remove(digest)
                else:
                    m.upsert(digest, *decoded)
            m.last_id = last

    def _rebuild(self, part: Partition, m: PartitionMirror) -> Flow[Any]:
        tail = yield Cmd(("XREVRANGE", part.log_key, "+", "-", "COUNT", 1))
        last = _text(tail[0][0]) if tail else _START
        fresh = PartitionMirror(coarse_from=1 << 62)  # lists trained once, after the load
        cursor: Any = 0
        while True:
            cursor, fields = yield Cmd(("HSCAN", part.vectors_key, cursor, "COUNT", self.page))
            items = (
                fields.items() if isinstance(fields, dict) else zip(fields[::2], fields[1::2], strict=True)
            )
            for digest, raw in items:
                decoded = decode_record(raw)
                if decoded is not None:
                    fresh.upsert(_text(digest), *decoded)
            if int(cursor) == 0:
                break
        fresh.loaded(m.coarse_from)
        with m.lock:
            m.__dict__.update({k: v for k, v in fresh.__dict__.items() if k != "lock"})
            # An empty log ("0-0"): read it from its beginning next time (items written meanwhile replay).
            m.last_id, m.synced = last, True


def _fields(fields: Any) -> tuple[str | None, str | None]:
    if isinstance(fields, dict):
        pairs = {_text(k): _text(v) for k, v in fields.items()}
    else:
        flat = [_text(x) for x in fields]
        pairs = dict(zip(flat[::2], flat[1::2], strict=False))
    return pairs.get("o"), pairs.get("d")
