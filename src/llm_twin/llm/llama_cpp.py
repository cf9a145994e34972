"""Embedded generation with llama.cpp (llama-cpp-python): the default, CPU-only, offline backend.

One ``Llama`` object per (GGUF path, n_ctx) per process, shared by the generator and the helper
LLM through ``get_llama``. A llama.cpp context is not thread-safe and generation is CPU-bound, so
every use goes through one FIFO lock per model: requests are served in arrival order and a
request that waits longer than the queue timeout fails with ``LLMTimeoutError`` (HTTP 504).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from llm_twin.errors import LLMError, LLMTimeoutError, LLMUnavailableError
from llm_twin.llm.base import ChatMessage, Completion, GenerationParams
from llm_twin.models import ModelNotFoundError, resolve_gguf

if TYPE_CHECKING:
    from llama_cpp import Llama

    from llm_twin.settings import Settings

logger = logging.getLogger(__name__)


class FairLock:
    """A FIFO mutex: waiters acquire in arrival order, with a timeout.

    ``threading.Lock`` lets a releasing thread re-acquire immediately (barging), which under load
    starves earlier requests. Here release hands ownership directly to the oldest waiter. The
    owner is not tracked, so a streaming generator may release from another worker thread.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._waiters: deque[threading.Event] = deque()
        self._locked = False

    def acquire(self, timeout: float | None = None) -> bool:
        with self._mutex:
            if not self._locked and not self._waiters:
                self._locked = True
                return True
            turn = threading.Event()
            self._waiters.append(turn)
        if turn.wait(timeout):
            return True
        with self._mutex:
            if turn.is_set():  # handed over between the timeout and taking the mutex
                return True
            self._waiters.remove(turn)
            return False

    def release(self) -> None:
        with self._mutex:
            if self._waiters:
                self._waiters.popleft().set()  # stays locked: ownership moves to the next waiter
            elif self._locked:
                self._locked = False
            else:
                raise RuntimeError("release of an unlocked FairLock")

    @property
    def queue_length(self) -> int:
        """Requests waiting (not counting the one running)."""
        with self._mutex:
            return len(self._waiters)

    def locked(self) -> bool:
        with self._mutex:
            return self._locked


@dataclass(frozen=True)
class SharedLlama:
    """A loaded model and the lock every user of it must hold while generating."""

    llama: Llama
    lock: FairLock
    path: Path
    n_ctx: int
    load_seconds: float


_CACHE: dict[tuple[str, int], SharedLlama] = {}
_CACHE_LOCK = threading.Lock()  # held while loading so two callers never load the same file twice


def default_threads() -> int:
    """CPU cores available to this process (respects affinity / container cpusets)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def get_llama(path: Path | str, n_ctx: int, n_threads: int | None = None, prompt_cache_mb: int = 0) -> SharedLlama:
    """The process-wide model for (path, n_ctx), loading it on first use.

    ``n_threads`` and ``prompt_cache_mb`` only apply to the first load. Raises
    ``LLMUnavailableError`` when llama-cpp-python is missing or the file cannot be loaded.

    ``prompt_cache_mb``: llama.cpp re-evaluates only the tokens after the longest prefix it still
    holds, but the generator and the helper take turns on one model, so the state left by the last
    call is rarely the right one. A RAM cache of states from earlier calls lets each prompt start
    from the longest matching one (the fixed system prompts of answering and of query expansion).
    """
    resolved = Path(path).expanduser().resolve()
    key = (str(resolved), n_ctx)
    with _CACHE_LOCK:
        shared = _CACHE.get(key)
        if shared is not None:
            return shared
        try:
            from llama_cpp import Llama
        except ImportError as error:  # optional extra: the service can still run other backends
            raise LLMUnavailableError("llama-cpp-python is not installed (pip install '.[local-llm]')") from error
        threads = n_threads or default_threads()
        started = time.perf_counter()
        try:
            llama = Llama(
                model_path=str(resolved),
                n_ctx=n_ctx,
                n_threads=threads,
                n_threads_batch=threads,
                verbose=False,
            )
        except Exception as error:  # ValueError for missing/corrupt files, RuntimeError from the C side
            raise LLMUnavailableError(f"cannot load GGUF model {resolved.name}: {error}") from error
        if prompt_cache_mb > 0:
            from llama_cpp import LlamaRAMCache

            llama.set_cache(LlamaRAMCache(capacity_bytes=prompt_cache_mb << 20))
        elapsed = time.perf_counter() - started
        logger.info("loaded %s (n_ctx=%d, threads=%d) in %.2fs", resolved.name, n_ctx, threads, elapsed)
        shared = SharedLlama(llama=llama, lock=FairLock(), path=resolved, n_ctx=n_ctx, load_seconds=elapsed)
        _CACHE[key] = shared
        return shared


def clear_llama_cache() -> None:
    """Forget loaded models (tests, reloads); clients that hold one keep it alive until dropped."""
    with _CACHE_LOCK:
        _CACHE.clear()


class LlamaCppClient:
    """``LLMClient`` over a local GGUF file, using the chat template stored in the GGUF."""

    def __init__(
        self,
        model: str,
        *,
        models_dir: Path,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        queue_timeout_s: float = 300.0,
        prompt_cache_mb: int = 0,
    ) -> None:
        self.model_name = Path(model).stem if model.endswith(".gguf") else model
        self.context_window = n_ctx
        self._model = model
        self._models_dir = models_dir
        self._n_threads = n_threads
        self._queue_timeout_s = queue_timeout_s
        self._prompt_cache_mb = prompt_cache_mb
        self._shared: SharedLlama | None = None
        self._formatter: tuple[Any, str] | None = None  # (Jinja2ChatFormatter or None, BOS text), built on first use
        self._warm_lock = threading.Lock()

    @classmethod
    def from_settings(
        cls, settings: Settings, *, model: str | None = None, queue_timeout_s: float | None = None
    ) -> LlamaCppClient:
        return cls(
            model or settings.llm_model,
            models_dir=settings.models_dir,
            n_ctx=settings.llm_n_ctx,
            n_threads=settings.llm_n_threads,
            queue_timeout_s=settings.llm_queue_timeout_s if queue_timeout_s is None else queue_timeout_s,
            prompt_cache_mb=settings.llm_prompt_cache_mb,
        )

    # --- lifecycle ---------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Resolve (and assemble, first time) the GGUF and load it; idempotent and thread-safe."""
        if self._shared is not None:
            return
        with self._warm_lock:
            if self._shared is not None:
                return
            try:
                path = resolve_gguf(self._model, self._models_dir)
            except ModelNotFoundError as error:
                raise LLMUnavailableError(str(error)) from error
            self._shared = get_llama(path, self.context_window, self._n_threads, self._prompt_cache_mb)

    @property
    def shared(self) -> SharedLlama:
        """The loaded model (warms up on first use)."""
        self.warm_up()
        assert self._shared is not None
        return self._shared

    @property
    def queue_length(self) -> int:
        return self._shared.lock.queue_length if self._shared else 0

    def close(self) -> None:
        """Nothing to release: the model is shared per process with the helper client (``get_llama``)
        and stays loaded until ``clear_llama_cache``."""

    # --- LLMClient ---------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        # Tokenizing only reads the vocabulary, so it needs no lock: prompt budgeting must not
        # wait behind a running generation.
        return len(self.shared.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def complete(self, messages: list[ChatMessage], params: GenerationParams) -> Completion:
        shared = self.shared
        with self._turn(shared, self._queue_timeout_s):
            started = time.perf_counter()
            try:
                response: Any = shared.llama.create_chat_completion(
                    messages=_llama_messages(messages), stream=False, **self._sampling(params)
                )
            except Exception as error:
                raise LLMError(f"llama.cpp generation failed: {error}") from error
            elapsed = time.perf_counter() - started
        choice = response["choices"][0]
        usage = response.get("usage") or {}
        return Completion(
            text=choice["message"].get("content") or "",
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            finish_reason=choice.get("finish_reason"),
            extra={"model": self.model_name, "generation_seconds": round(elapsed, 3)},
        )

    def stream(self, messages: list[ChatMessage], params: GenerationParams) -> Generator[str, None, None]:
        """Yield content pieces; the model stays locked until the generator finishes or is closed.

        Consumers that stop early should ``close()`` the generator (Starlette does when the client
        disconnects; CPython also closes it when the last reference goes away).
        """
        return self._stream(messages, params, self._queue_timeout_s)

    # --- capabilities (llm.base.SupportsDeadline, llm.base.TokenScorer) ------------------------

    def complete_within(self, messages: list[ChatMessage], params: GenerationParams, timeout_s: float) -> Completion:
        """``complete`` bounded as a whole: queue wait plus generation stop at ``timeout_s``.

        Generates through the stream so the deadline is checked after every piece and the model is
        released as soon as it passes; prompt evaluation itself cannot be interrupted. Token usage
        is not reported on this path (llama.cpp streams carry none).
        """
        deadline = time.monotonic() + timeout_s
        started = time.perf_counter()
        pieces: list[str] = []
        stream = self._stream(messages, params, min(self._queue_timeout_s, timeout_s))
        try:
            for piece in stream:
                pieces.append(piece)
                if time.monotonic() > deadline:
                    raise LLMTimeoutError(f"local model did not answer within {timeout_s:g}s")
        finally:
            stream.close()  # frees the model for the next request now, not when garbage-collected
        elapsed = time.perf_counter() - started
        return Completion(
            text="".join(pieces), extra={"model": self.model_name, "generation_seconds": round(elapsed, 3)}
        )

    def next_token_logprobs(self, messages: list[ChatMessage], candidates: Sequence[str]) -> dict[str, float]:
        """Log-probabilities of the candidates' first tokens after the chat-formatted prompt.

        One forward pass over the prompt and only the last position's logits are read, so the model
        needs no ``logits_all`` (which would cost memory for every position).
        """
        shared = self.shared
        llama = shared.llama
        prompt, add_bos = self._chat_prompt(messages)
        tokens = llama.tokenize(prompt.encode("utf-8"), add_bos=add_bos, special=True)
        first_tokens: dict[str, int] = {}
        for word in candidates:
            ids = llama.tokenize(word.encode("utf-8"), add_bos=False, special=False)
            if ids:
                first_tokens[word] = ids[0]
        with self._turn(shared, self._queue_timeout_s):
            try:
                llama.reset()
                llama.eval(tokens)
                logits = self._last_logits(llama)
            except Exception as error:
                raise LLMError(f"llama.cpp evaluation failed: {error}") from error
        # log-softmax over the vocabulary, in float64 so candidates far below the top keep their order
        shifted = logits.astype(np.float64) - float(logits.max())
        log_norm = float(np.log(np.exp(shifted).sum()))
        return {word: float(shifted[token]) - log_norm for word, token in first_tokens.items()}

    # --- internals ---------------------------------------------------------------------------

    def _stream(
        self, messages: list[ChatMessage], params: GenerationParams, queue_timeout_s: float
    ) -> Generator[str, None, None]:
        shared = self.shared
        with self._turn(shared, queue_timeout_s):
            try:
                chunks: Any = shared.llama.create_chat_completion(
                    messages=_llama_messages(messages), stream=True, **self._sampling(params)
                )
            except Exception as error:
                raise LLMError(f"llama.cpp generation failed: {error}") from error
            try:
                for chunk in chunks:
                    piece = chunk["choices"][0]["delta"].get("content")
                    if piece:
                        yield piece
            except GeneratorExit:
                raise
            except Exception as error:
                raise LLMError(f"llama.cpp generation failed: {error}") from error
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()  # stop llama.cpp's own generator before the next request takes the model

    @contextmanager
    def _turn(self, shared: SharedLlama, timeout_s: float) -> Iterator[None]:
        if not shared.lock.acquire(timeout=max(0.0, timeout_s)):
            raise LLMTimeoutError(
                f"local model busy: waited {timeout_s:g}s in a queue of {shared.lock.queue_length + 1}"
            )
        try:
            yield
        finally:
            shared.lock.release()

    def _chat_prompt(self, messages: list[ChatMessage]) -> tuple[str, bool]:
        """``messages`` rendered with the GGUF's chat template, and whether a BOS token must be added.

        ``create_chat_completion`` renders internally and exposes no prompt, so the template is
        rendered here the same way llama-cpp-python does (Jinja2ChatFormatter with the BOS/EOS
        texts of the vocabulary). Without a template, plain text ending in "Answer:".
        """
        if self._formatter is None:
            self._formatter = self._build_formatter(self.shared.llama)
        formatter, bos_text = self._formatter
        if formatter is None:
            return "\n\n".join(m["content"] for m in messages) + "\nAnswer:", True
        prompt: str = formatter(messages=messages).prompt
        return prompt, not (bos_text and prompt.startswith(bos_text))

    @staticmethod
    def _build_formatter(llama: Llama) -> tuple[Any, str]:
        import llama_cpp
        from llama_cpp import llama_chat_format

        template = llama.metadata.get("tokenizer.chat_template")
        if not template:
            return None, ""
        # Token texts through the public low-level API (what llama-cpp-python reads for its own handler).
        vocab = llama_cpp.llama_model_get_vocab(llama.model)

        def text(token: int) -> str:
            return llama_cpp.llama_vocab_get_text(vocab, token).decode("utf-8") if token >= 0 else ""

        bos = text(llama.token_bos())
        formatter = llama_chat_format.Jinja2ChatFormatter(
            template=template, eos_token=text(llama.token_eos()), bos_token=bos
        )
        return formatter, bos

    @staticmethod
    def _last_logits(llama: Llama) -> np.ndarray:
        """Logits of the last evaluated position.

        ``Llama.scores`` / ``eval_logits`` are filled only with ``logits_all=True`` (llama-cpp-python
        0.3 samples inside llama.cpp), so the context's logits are read through the low-level API.
        """
        import llama_cpp

        pointer = llama_cpp.llama_get_logits_ith(llama.ctx, -1)
        return np.ctypeslib.as_array(pointer, shape=(llama.n_vocab(),)).copy()

    @staticmethod
    def _sampling(params: GenerationParams) -> dict[str, Any]:
        return {
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "repeat_penalty": params.repetition_penalty,
            "stop": list(params.stop) or None,
        }


def _llama_messages(messages: list[ChatMessage]) -> list[Any]:
    # llama-cpp-python types messages with one TypedDict per role, which a ``role: str`` cannot match.
    return list(messages)
