"""The default ``cross-encoder`` backend: ONNX Runtime and a fast tokenizer, one loaded model per process."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from llm_twin.domain.documents import EmbeddedChunk
from llm_twin.models import find_onnx_files
from llm_twin.retrieval.rerankers.base import (
    MAX_PAIR_TOKENS,
    SearchFusion,
    apply_scores,
    fuse_with_search,
    fusion_description,
    logits_to_scores,
    passage_text,
    resolve_cross_encoder,
)

logger = logging.getLogger(__name__)


class _OnnxCrossEncoder:
    """A loaded ONNX cross-encoder: tokenizer + session. Shared per process (see ``_load_onnx``)."""

    def __init__(self, model_path: Path, tokenizer_path: Path, max_length: int, threads: int | None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self.input_names = {i.name for i in self.session.get_inputs()}
        outputs = [o.name for o in self.session.get_outputs()]
        self.output_name = "logits" if "logits" in outputs else outputs[0]
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
        # Exported tokenizer.json files often pin a fixed padding length (MiniLM's is 128): replace
        # it with pad-to-longest-in-batch, and truncate pairs longest-first (the passage, in practice).
        padding = tokenizer.padding or {}
        tokenizer.no_padding()
        tokenizer.enable_padding(pad_id=padding.get("pad_id", 0), pad_token=padding.get("pad_token", "[PAD]"))
        tokenizer.enable_truncation(max_length, strategy="longest_first")
        self.tokenizer = tokenizer
        self.max_length = max_length

    def score(self, pairs: Sequence[tuple[str, str]], batch_size: int) -> np.ndarray:
        scores = np.empty(len(pairs), dtype=np.float32)
        for idx in _batches(pairs, batch_size):
            scores[idx] = self._score_batch([pairs[i] for i in idx])
        return scores

    def padded_tokens(self, pairs: Sequence[tuple[str, str]], batch_size: int) -> tuple[int, int]:
        """(tokens run, of which padding) when ``score`` runs ``pairs``: the most that sequence
        packing (``embedding/packing.py``) could save here."""
        run = padding = 0
        for idx in _batches(pairs, batch_size):
            lengths = [sum(e.attention_mask) for e in self.tokenizer.encode_batch([pairs[i] for i in idx])]
            run += max(lengths) * len(lengths)
            padding += max(lengths) * len(lengths) - sum(lengths)
        return run, padding

    def _score_batch(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(pairs)
        feed: dict[str, np.ndarray] = {}
        columns = {
            "input_ids": lambda e: e.ids,
            "attention_mask": lambda e: e.attention_mask,
            "token_type_ids": lambda e: e.type_ids,
        }
        for name, get in columns.items():
            if name in self.input_names:
                feed[name] = np.asarray([get(e) for e in encodings], dtype=np.int64)
        logits = np.asarray(self.session.run([self.output_name], feed)[0], dtype=np.float32)
        return logits_to_scores(logits)


def _batches(pairs: Sequence[tuple[str, str]], batch_size: int) -> list[list[int]]:
    """Pair indices in batches of similar length, so short pairs are not padded to the longest
    passage (what padding is left: ``padded_tokens``, reported by benchmarks/reranker.py)."""
    lengths = [len(q) + len(p) for q, p in pairs]
    order = sorted(range(len(pairs)), key=lengths.__getitem__)
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


_ONNX_CACHE: dict[tuple[str, int, int | None], _OnnxCrossEncoder] = {}
_ONNX_CACHE_LOCK = threading.Lock()  # held while loading: two callers never load the same model twice


def _load_onnx(model_path: Path, tokenizer_path: Path, max_length: int, threads: int | None) -> _OnnxCrossEncoder:
    key = (str(model_path.resolve()), max_length, threads)
    with _ONNX_CACHE_LOCK:
        loaded = _ONNX_CACHE.get(key)
        if loaded is None:
            loaded = _OnnxCrossEncoder(model_path, tokenizer_path, max_length, threads)
            _ONNX_CACHE[key] = loaded
            logger.info("loaded cross-encoder %s (max_length=%d)", model_path, max_length)
        return loaded


def model_max_length(directory: Path, cap: int = MAX_PAIR_TOKENS) -> int:
    """The pair length the model was trained for: tokenizer_config / config.json, capped at ``cap``."""
    limits = [cap]
    for name, key in (("tokenizer_config.json", "model_max_length"), ("config.json", "max_position_embeddings")):
        try:
            value = json.loads((directory / name).read_text()).get(key)
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(value, int) and value >= 16:
            limits.append(value)
    return min(limits)


class OnnxCrossEncoderReranker:
    """``cross-encoder`` backend on ONNX Runtime: any HF cross-encoder exported to ONNX (e.g. by optimum)."""

    name = "cross-encoder"

    def __init__(
        self,
        model: str | Path,
        *,
        models_dir: Path | None = None,
        top_n: int = 20,
        batch_size: int = 16,
        max_length: int | None = None,
        threads: int | None = None,
        search_weight: float = 0.0,
        fusion: SearchFusion = "score",
    ) -> None:
        self.model = str(model)
        self.models_dir = Path(models_dir) if models_dir else Path(".")
        self.top_n = top_n
        self.batch_size = batch_size
        self.max_length = max_length
        self.threads = threads
        #: > 0: the model's scores are combined with the search's (``fuse_with_search``, by ``fusion``).
        self.search_weight = search_weight
        self.fusion: SearchFusion = fusion
        self.description = f"cross-encoder ({self.model}{fusion_description(search_weight, fusion)})"
        self._loaded: _OnnxCrossEncoder | None = None

    def warm_up(self) -> None:
        if self._loaded is not None:
            return
        directory = resolve_cross_encoder(self.model, self.models_dir)
        files = find_onnx_files(directory, model_id=self.model)
        max_length = min(self.max_length or MAX_PAIR_TOKENS, model_max_length(directory))
        self._loaded = _load_onnx(files.model, files.tokenizer, max_length, self.threads)

    def score(self, query: str, passages: Sequence[str]) -> np.ndarray:
        self.warm_up()
        assert self._loaded is not None
        return self._loaded.score([(query, p) for p in passages], self.batch_size)

    def padded_tokens(self, query: str, passages: Sequence[str]) -> tuple[int, int]:
        """(tokens run, of which padding) for scoring ``passages`` against ``query``."""
        self.warm_up()
        assert self._loaded is not None
        return self._loaded.padded_tokens([(query, p) for p in passages], self.batch_size)

    def run(self, query: str, chunks: list[EmbeddedChunk], top_k: int) -> list[EmbeddedChunk]:
        head = chunks[: self.top_n]
        scores = self.score(query, [passage_text(c) for c in head])
        fused = fuse_with_search(scores.tolist(), head, self.search_weight, self.fusion)
        return apply_scores(chunks, fused, self.top_n, top_k)
