"""Rerankers: a cross-encoder (ONNX Runtime, or sentence-transformers when installed), an LLM, or none.

Every backend scores only the first ``top_n`` candidates (the fused search order): scoring is the
expensive part and the tail rarely reaches the top. Scored candidates come first, best first, with
``score`` set to the reranker's score and the search score kept in ``metadata["search_score"]``;
unscored candidates follow in search order (keeping their search score) only to fill ``top_k``
when it exceeds ``top_n``. Input chunks are never mutated (they may be shared across threads).
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from llm_twin.domain.documents import EmbeddedChunk
from llm_twin.llm.base import ChatMessage, GenerationParams, LLMClient
from llm_twin.errors import LLMError
from llm_twin.models import ModelNotFoundError, find_onnx_files
from llm_twin.retrieval.types import Reranker

if TYPE_CHECKING:
    from llm_twin.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_CROSS_ENCODER = "cross-encoder/ms-marco-MiniLM-L-6-v2"
RERANK_MODEL_ENV = "LLM_TWIN_RERANK_MODEL"
MAX_PAIR_TOKENS = 512


class RerankerConfigError(ModelNotFoundError):
    """The configured reranker cannot be built; the message names the setting to change."""


def passage_text(chunk: EmbeddedChunk) -> str:
    # Title + text, as in the BEIR reranking setup: titles carry a lot of the topic.
    return f"{chunk.title}\n{chunk.content}" if chunk.title else chunk.content


def _apply_scores(chunks: Sequence[EmbeddedChunk], scores: Sequence[float], top_n: int, top_k: int) -> list[EmbeddedChunk]:
    """Scored head (best first, stable on ties) then the unscored tail in search order, cut to ``top_k``."""
    head = [
        chunk.model_copy(
            update={
                "score": float(score),
                "metadata": {**chunk.metadata, "search_score": chunk.score, "rerank_score": float(score)},
            }
        )
        for chunk, score in zip(chunks[:top_n], scores, strict=True)
    ]
    order = sorted(range(len(head)), key=lambda i: -head[i].score)  # sorted() is stable: ties keep search order
    ranked = [head[i] for i in order] + list(chunks[top_n:])
    return ranked[:top_k]


# --- none ---------------------------------------------------------------------------------------


class NoopReranker:
    """``rerank: "none"``: keeps the search order and the search score."""

    name = "none"

    def __init__(self, reason: str = "rerank_backend=none") -> None:
        self.reason = reason
        self.description = f"none ({reason})"

    def warm_up(self) -> None:
        return None

    def run(self, query: str, chunks: list[EmbeddedChunk], top_k: int) -> list[EmbeddedChunk]:
        return list(chunks[:top_k])


# --- cross-encoder (ONNX Runtime) ------------------------------------------------------------------


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
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        # Batch pairs of similar length together so short ones are not padded to the longest passage.
        lengths = [len(q) + len(p) for q, p in pairs]
        order = sorted(range(len(pairs)), key=lengths.__getitem__)
        scores = np.empty(len(pairs), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            scores[idx] = self._score_batch([pairs[i] for i in idx])
        return scores

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


def logits_to_scores(logits: np.ndarray) -> np.ndarray:
    """[n] or [n, 1] -> the logit; [n, 2] -> logit(relevant) - logit(irrelevant)."""
    if logits.ndim == 1:
        return logits
    if logits.ndim == 2 and logits.shape[1] == 1:
        return logits[:, 0]
    if logits.ndim == 2 and logits.shape[1] == 2:
        return logits[:, 1] - logits[:, 0]
    raise ValueError(f"cross-encoder output of shape {logits.shape} is not [n], [n, 1] or [n, 2]")


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
        if isinstance(value, int) and 16 <= value:
            limits.append(value)
    return min(limits)


def resolve_cross_encoder(name: str, models_dir: Path) -> Path:
    """A local directory, or ``models_dir / <id>`` for an id like ``cross-encoder/ms-marco-MiniLM-L-6-v2``.

    Nothing is downloaded: place an ONNX export (model.onnx or onnx/model.onnx + tokenizer.json),
    or a sentence-transformers directory when that package is installed, at one of those places.
    """
    for candidate in (Path(name).expanduser(), Path(models_dir) / name):
        if candidate.is_dir():
            return candidate
    raise ModelNotFoundError(
        f"cross-encoder {name!r} is neither a local directory nor under {Path(models_dir) / name} "
        f"(no hub downloads here: put an ONNX export there, or set {RERANK_MODEL_ENV} to a directory)"
    )


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
    ) -> None:
        self.model = str(model)
        self.models_dir = Path(models_dir) if models_dir else Path(".")
        self.top_n = top_n
        self.batch_size = batch_size
        self.max_length = max_length
        self.threads = threads
        self.description = f"cross-encoder ({self.model})"
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

    def run(self, query: str, chunks: list[EmbeddedChunk], top_k: int) -> list[EmbeddedChunk]:
        head = chunks[: self.top_n]
        scores = self.score(query, [passage_text(c) for c in head])
        return _apply_scores(chunks, scores.tolist(), self.top_n, top_k)


class SentenceTransformersCrossEncoderReranker:
    """``cross-encoder`` backend through ``sentence_transformers.CrossEncoder`` (optional, needs torch).

    Used only for a model directory without ONNX files when sentence-transformers is installed; the
    project does not depend on it (the ONNX path covers the same models without torch).
    """

    name = "cross-encoder"

    def __init__(self, directory: Path, *, top_n: int = 20, batch_size: int = 16, max_length: int = MAX_PAIR_TOKENS) -> None:
        self.directory = Path(directory)
        self.top_n = top_n
        self.batch_size = batch_size
        self.max_length = max_length
        self.description = f"cross-encoder ({self.directory}, sentence-transformers)"
        self._model: Any = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        with self._lock:
            if self._model is None:
                from sentence_transformers import CrossEncoder

                self._model = CrossEncoder(str(self.directory), max_length=self.max_length)

    def run(self, query: str, chunks: list[EmbeddedChunk], top_k: int) -> list[EmbeddedChunk]:
        self.warm_up()
        head = chunks[: self.top_n]
        if not head:
            return list(chunks[:top_k])
        raw = self._model.predict([(query, passage_text(c)) for c in head], batch_size=self.batch_size)
        scores = logits_to_scores(np.asarray(raw, dtype=np.float32))
        return _apply_scores(chunks, scores.tolist(), self.top_n, top_k)


# --- LLM yes/no --------------------------------------------------------------------------------------

RELEVANCE_SYSTEM = (
    "You judge search results. Given a question and a passage, answer with one word: "
    "Yes if the passage helps answer the question, No otherwise."
)
YES_WORDS = ("Yes", "yes", " Yes", " yes", "YES")
NO_WORDS = ("No", "no", " No", " no", "NO")


def relevance_messages(query: str, passage: str, max_chars: int = 2000) -> list[ChatMessage]:
    # The question goes first so a backend with prefix caching can reuse it across passages.
    return [
        {"role": "system", "content": RELEVANCE_SYSTEM},
        {"role": "user", "content": f"Question: {query}\n\nPassage:\n{passage[:max_chars]}\n\nDoes the passage help answer the question? Yes or No."},
    ]


def _logsumexp(values: Sequence[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def yes_no_score(logprobs: dict[str, float]) -> float:
    """log P(yes) - log P(no) from token -> log-probability (or logit: normalisation cancels).

    Missing sides get a floor (-30, well below anything a top-20 list shows) so the score stays finite.
    """
    yes = [v for k, v in logprobs.items() if k.strip().lower() == "yes"]
    no = [v for k, v in logprobs.items() if k.strip().lower() == "no"]
    return (_logsumexp(yes) if yes else -30.0) - (_logsumexp(no) if no else -30.0)


def _llama_cpp_scorer(client: Any) -> Callable[[list[ChatMessage]], float]:
    """Final-token logits of the local GGUF (no ``logits_all`` needed: only the last position is read)."""
    from llama_cpp import llama_chat_format

    shared = client.shared  # LlamaCppClient: the process-wide model and its FIFO lock
    llama = shared.llama
    template = llama.metadata.get("tokenizer.chat_template")
    formatter = None
    bos_text = ""
    if template:
        eos = llama._model.token_get_text(llama.token_eos()) if llama.token_eos() >= 0 else ""
        bos = llama._model.token_get_text(llama.token_bos()) if llama.token_bos() >= 0 else ""
        formatter = llama_chat_format.Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
        bos_text = bos
    candidates: dict[str, int] = {}
    for word in YES_WORDS + NO_WORDS:
        ids = llama.tokenize(word.encode("utf-8"), add_bos=False, special=False)
        if ids:
            candidates.setdefault(word, ids[0])
    n_vocab = llama.n_vocab()
    timeout = getattr(client, "_queue_timeout_s", 300.0)

    def score(messages: list[ChatMessage]) -> float:
        if formatter is not None:
            prompt = formatter(messages=messages).prompt
            add_bos = not (bos_text and prompt.startswith(bos_text))
        else:
            prompt = "\n\n".join(m["content"] for m in messages) + "\nAnswer:"
            add_bos = True
        tokens = llama.tokenize(prompt.encode("utf-8"), add_bos=add_bos, special=True)
        if not shared.lock.acquire(timeout=timeout):
            raise LLMError(f"local model busy for {timeout:g}s")
        try:
            llama.reset()
            llama.eval(tokens)
            logits = np.ctypeslib.as_array(llama._ctx.get_logits_ith(-1), shape=(n_vocab,))
            picked = {word: float(logits[i]) for word, i in candidates.items()}
        finally:
            shared.lock.release()
        return yes_no_score(picked)

    return score


def _openai_scorer(client: Any) -> Callable[[list[ChatMessage]], float]:
    """One-token completion with ``top_logprobs`` (OpenAI, vLLM and llama.cpp server support it)."""

    def score(messages: list[ChatMessage]) -> float:
        payload = {
            "model": client.model_name,
            "messages": list(messages),
            "max_tokens": 1,
            "temperature": 0.0,
            "logprobs": True,
            "top_logprobs": 20,
        }
        # _send carries the client's retries and error mapping; a public logprobs call would be cleaner.
        response = client._send(payload, stream=False)
        try:
            return parse_openai_logprobs(response.json())
        except (ValueError, KeyError, IndexError, TypeError) as error:
            raise LLMError(f"no logprobs in the response from {client.base_url}: {error}") from error

    return score


def parse_openai_logprobs(body: dict[str, Any]) -> float:
    content = body["choices"][0]["logprobs"]["content"][0]
    table = {item["token"]: float(item["logprob"]) for item in content.get("top_logprobs") or []}
    table.setdefault(content["token"], float(content["logprob"]))
    return yes_no_score(table)


def _text_scorer(client: LLMClient) -> Callable[[list[ChatMessage]], float]:
    """Any other LLMClient: a one-word answer, +1 yes / -1 no / 0 otherwise (coarse: ties keep search order)."""

    def score(messages: list[ChatMessage]) -> float:
        text = client.complete(messages, GenerationParams(max_new_tokens=3, temperature=0.0)).text.strip().lower()
        return 1.0 if text.startswith("yes") else -1.0 if text.startswith("no") else 0.0

    return score


class LlmYesNoReranker:
    """``llm`` backend: pointwise relevance, score = log P(yes) - log P(no).

    Costly and, with small local models, worse than no reranking (measured: Qwen2.5-Coder-1.5B on
    2 cores, ~1.9 s per pair, lower SciFact nDCG); meant for strong hosted LLMs.
    """

    name = "llm"

    def __init__(self, llm: LLMClient, *, top_n: int = 20) -> None:
        self.llm = llm
        self.top_n = top_n
        self.description = f"llm ({getattr(llm, 'model_name', type(llm).__name__)})"
        self._scorer: Callable[[list[ChatMessage]], float] | None = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        with self._lock:
            if self._scorer is not None:
                return
            self.llm.warm_up()
            if hasattr(self.llm, "shared") and hasattr(self.llm, "_turn"):  # LlamaCppClient
                self._scorer = _llama_cpp_scorer(self.llm)
            elif hasattr(self.llm, "_send") and hasattr(self.llm, "base_url"):  # OpenAICompatibleClient
                self._scorer = _openai_scorer(self.llm)
            else:
                self._scorer = _text_scorer(self.llm)

    def run(self, query: str, chunks: list[EmbeddedChunk], top_k: int) -> list[EmbeddedChunk]:
        self.warm_up()
        assert self._scorer is not None
        scores = [self._scorer(relevance_messages(query, passage_text(c))) for c in chunks[: self.top_n]]
        return _apply_scores(chunks, scores, self.top_n, top_k)


# --- factory -------------------------------------------------------------------------------------


def find_local_cross_encoder(models_dir: Path) -> Path | None:
    """First directory under ``models_dir/cross-encoder/`` holding an ONNX export, by name."""
    root = Path(models_dir) / "cross-encoder"
    if not root.is_dir():
        return None
    for candidate in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            find_onnx_files(candidate, model_id=candidate.name)
        except ModelNotFoundError:
            continue
        return candidate
    return None


def _cross_encoder(model: str, settings: Settings) -> Reranker:
    directory = resolve_cross_encoder(model, settings.models_dir)
    try:
        find_onnx_files(directory, model_id=model)
    except ModelNotFoundError as onnx_error:
        try:
            import sentence_transformers  # noqa: F401  (optional backend)
        except ImportError:
            raise RerankerConfigError(
                f"{onnx_error}; export the cross-encoder to ONNX (model.onnx + tokenizer.json) "
                f"or install sentence-transformers ({RERANK_MODEL_ENV}={model})"
            ) from onnx_error
        return SentenceTransformersCrossEncoderReranker(directory, top_n=settings.rerank_top_n)
    return OnnxCrossEncoderReranker(model, models_dir=settings.models_dir, top_n=settings.rerank_top_n)


def build_reranker(settings: Settings, helper_llm: LLMClient | None = None) -> Reranker:
    """The reranker for ``settings.rerank_backend`` (not warmed up).

    ``auto``: the cross-encoder when ``rerank_model`` is set or one is found under
    ``models_dir/cross-encoder/*``, otherwise ``none`` (logged, and reported in every response).
    A configured model that cannot be found is an error, never a silent fallback.
    """
    backend = settings.rerank_backend
    if backend == "none":
        return NoopReranker("LLM_TWIN_RERANK_BACKEND=none")
    if backend == "llm":
        if helper_llm is None:
            raise RerankerConfigError(
                "LLM_TWIN_RERANK_BACKEND=llm needs a helper LLM (LLM_TWIN_HELPER_LLM_BACKEND is none)"
            )
        return LlmYesNoReranker(helper_llm, top_n=settings.rerank_top_n)
    model = settings.rerank_model
    if model is None:
        found = find_local_cross_encoder(settings.models_dir)
        if found is not None:
            model = str(found)
        elif backend == "cross-encoder":
            raise RerankerConfigError(
                f"LLM_TWIN_RERANK_BACKEND=cross-encoder needs {RERANK_MODEL_ENV} (a directory with model.onnx + "
                f"tokenizer.json, or an id under {settings.models_dir}); none found under "
                f"{settings.models_dir / 'cross-encoder'}"
            )
        else:
            reason = (
                f"no cross-encoder configured ({RERANK_MODEL_ENV}) or found under {settings.models_dir / 'cross-encoder'}"
            )
            logger.warning("rerank: none (%s)", reason)
            return NoopReranker(reason)
    reranker = _cross_encoder(model, settings)
    logger.info("rerank: %s", reranker.description)  # type: ignore[attr-defined]
    return reranker
