"""Embedding vectors: checked and normalised on the way in, and their record format in Valkey.

A vector is usable when it is a flat sequence of finite numbers of the expected dimension with a non-zero
norm; anything else is refused with the kind of problem (the caller turns it into a miss and one warning).
Records are ASCII (``<dim>:<base64 of little-endian float32>:<question>``) so that a client that decodes
responses to ``str`` reads them as well as one that keeps bytes.

Example:
    >>> vec, problem = as_unit_vector([3.0, 4.0], dimension=None)
    >>> problem is None and [round(float(x), 2) for x in vec]
    [0.6, 0.8]
    >>> decode_record(encode_record("Refund window?", vec))[0]
    'Refund window?'
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["as_unit_vector", "encode_record", "decode_record"]

Vector = np.ndarray


def as_unit_vector(raw: Any, dimension: int | None) -> tuple[Vector | None, str | None]:
    """(unit float32 vector, None), or (None, the problem: 'shape', 'dimension', 'not finite', 'zero')."""
    try:
        vec = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        return None, "shape"
    if vec.ndim != 1 or vec.size == 0:
        return None, "shape"
    if dimension is not None and vec.size != dimension:
        return None, "dimension"
    if not np.isfinite(vec).all():
        return None, "not finite"
    norm = float(np.linalg.norm(vec))
    if norm == 0.0 or not np.isfinite(norm):
        return None, "zero"
    return (vec / norm).astype(np.float32), None


def encode_record(question: str, vec: Vector) -> str:
    data = base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode("ascii")
    return f"{vec.size}:{data}:{question}"


def decode_record(raw: bytes | str) -> tuple[str, Vector] | None:
    """(question, unit vector), or None for anything this module did not write."""
    try:
        text = raw.decode("utf-8", "surrogatepass") if isinstance(raw, bytes) else raw
        dim_s, data, question = text.split(":", 2)
        dim = int(dim_s)
        vec = np.frombuffer(base64.b64decode(data, validate=True), dtype="<f4")
    except (ValueError, UnicodeDecodeError, binascii.Error):
        return None
    if dim <= 0 or vec.size != dim:
        return None
    unit, problem = as_unit_vector(vec, dim)
    if unit is None or problem is not None:
        return None
    return question, unit


def dimension_of(vectors: Sequence[Vector]) -> int | None:
    return int(vectors[0].size) if vectors else None
