"""Sentence embeddings with ONNX Runtime + tokenizers (all-MiniLM-L6-v2 int8 by default)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from llm_twin.embedding.packing import mean_pool_spans, packed_feeds, packed_model
from llm_twin.models import OnnxModelFiles, resolve_embedding_model

if TYPE_CHECKING:
    from llm_twin.settings import Settings

Precision = Literal["int8-dynamic", "as-is"]
#: Where quantized copies go when no models directory is given (the default data dir's).
DEFAULT_CACHE_DIR = Path(__file__).resolve().parents[3] / "data" / "models"


class OnnxSentenceEmbedder:
    """Mean-pooled, L2-normalised sentence embeddings; model loaded once in ``warm_up()``.

    ``precision="int8-dynamic"`` (the default) runs a dynamically quantized copy of the model,
    built once into ``cache_dir``; ``"as-is"`` runs the given ONNX file unchanged. The two give
    slightly different vectors, so ``model_id`` names the precision and ingest re-embeds on a change.
    ``thread_spinning`` lets ONNX Runtime's idle workers busy-wait for the next call (off by default).
    ``packing`` runs a packed copy of the graph (``embedding/packing.py``): the texts of a call
    share rows instead of being padded to the longest; the vectors are the same.
    """

    def __init__(
        self,
        model: str = "sentence-transformers/all-MiniLM-L6-v2",
        max_seq_tokens: int = 256,
        batch_size: int = 32,
        threads: int | None = None,
        precision: Precision = "int8-dynamic",
        cache_dir: Path | None = None,
        thread_spinning: bool = False,
        packing: bool = True,
    ) -> None:
        self.model = model
        self.max_seq_tokens = max_seq_tokens
        self.batch_size = batch_size
        self.threads = threads
        self.precision = precision
        self.thread_spinning = thread_spinning
        self.packing = packing
        self.packed = False  # whether warm_up found a packable graph
        self.cache_dir = Path(cache_dir) if cache_dir else DEFAULT_CACHE_DIR
        self._files: OnnxModelFiles | None = None
        # onnxruntime and tokenizers ship no types; both are set together by warm_up().
        self._session: Any = None
        self._tokenizer: Any = None
        self._input_names: set[str] = set()
        self.dimension = 0
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> OnnxSentenceEmbedder:
        return cls(
            settings.embedding_model,
            settings.max_seq_tokens,
            settings.embedding_batch_size,
            settings.embedding_threads,
            precision=settings.embedding_precision,
            cache_dir=settings.models_dir / "embeddings",
            thread_spinning=settings.embedding_thread_spinning,
            packing=settings.embedding_packing,
        )

    @property
    def model_id(self) -> str:
        return self._files.model_id if self._files else self.model

    def warm_up(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            import onnxruntime as ort
            from tokenizers import Tokenizer

            files = resolve_embedding_model(self.model)
            source, quantized = files.model, None
            if self.precision == "int8-dynamic":
                from llm_twin.embedding.quantize import SUFFIX, dynamic_int8_model

                quantized = dynamic_int8_model(files.model, self.cache_dir)
                if quantized is not None:
                    files = OnnxModelFiles(
                        model=quantized, tokenizer=files.tokenizer, model_id=f"{files.model_id}@{SUFFIX}"
                    )
            packed = None
            if self.packing:
                # Same weights and vectors as ``files.model``, so the model id does not change.
                packed = packed_model(source, files.tokenizer, self.cache_dir, quantized=quantized is not None)
            options = ort.SessionOptions()
            options.intra_op_num_threads = self.threads or os.cpu_count() or 1
            options.inter_op_num_threads = 1
            # Spinning workers keep a core busy after each call; the engine's search threads need it next.
            options.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.thread_spinning else "0")
            options.log_severity_level = 3  # a packed graph leaves constants ORT reports as unused
            session = ort.InferenceSession(str(packed or files.model), options, providers=["CPUExecutionProvider"])
            tokenizer = Tokenizer.from_file(str(files.tokenizer))
            tokenizer.enable_truncation(max_length=self.max_seq_tokens)
            tokenizer.no_padding()  # we pack, or pad per batch to the longest member, not to max length
            self._input_names = {i.name for i in session.get_inputs()}
            self._files, self._tokenizer = files, tokenizer
            self.packed = packed is not None
            self._session = session
            self.dimension = int(self._encode_batch(["warm up"]).shape[1])

    @property
    def tokenizer(self) -> Any:
        self.warm_up()
        return self._tokenizer

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embeddings in input order; batches are formed over length-sorted texts to minimise padding."""
        self.warm_up()
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(list(texts))
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            out[index] = self._run([encodings[i] for i in index])
        return out

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        return self._run(self._tokenizer.encode_batch(texts))

    def _run(self, encodings: list[Any]) -> np.ndarray:
        if self.packed:
            return self._run_packed(encodings)
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, enc in enumerate(encodings):
            ids[row, : len(enc.ids)] = enc.ids
            mask[row, : len(enc.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)

    def _run_packed(self, encodings: list[Any]) -> np.ndarray:
        feeds, spans = packed_feeds([e.ids for e in encodings])
        hidden = self._session.run(None, {k: v for k, v in feeds.items() if k in self._input_names})[0]
        return mean_pool_spans(hidden, spans)
