"""Contrastive fine-tuning of a mean-pooled sentence embedder, exported to ONNX for our runtime.

The loss is the usual one for retrieval fine-tuning (MultipleNegativesRanking, as in
sentence-transformers): each query must score its relevant document above every other document in
the batch, the other queries' positives and one mined hard negative per query. Needs torch and
transformers (``make install-train``); the service itself never imports this module.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llm_twin.errors import InvalidInputError, UnavailableError
from llm_twin.training.pairs import TrainingPair

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


class TrainingUnavailableError(UnavailableError):
    """torch / transformers are not installed (the message names the make target)."""


def require_training_stack(base_model: Path) -> None:
    """Fail with a clear message unless torch and transformers are installed (``make install-train``; the
    service never installs them) and ``base_model`` is a Hugging Face model directory."""
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        raise TrainingUnavailableError(
            "training needs torch and transformers, which the service does not install: run `make install-train`"
        ) from None
    if not (base_model / "config.json").is_file():
        raise TrainingUnavailableError(f"--base: {base_model} is not a HuggingFace model directory (no config.json)")


@dataclass
class TrainingReport:
    base_model: str
    pairs: int
    epochs: int
    learning_rate: float
    batch_size: int
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)  # mean loss per epoch
    dev: dict[str, dict[str, float]] = field(default_factory=dict)  # "base" / "tuned" -> metrics

    def as_dict(self) -> dict:
        return asdict(self)


class SentenceEmbedderTrainer:
    """Fine-tunes a BERT-style encoder (HF directory) with mean pooling, like all-MiniLM-L6-v2."""

    def __init__(
        self,
        base_model: Path,
        epochs: int = 3,
        learning_rate: float = 2e-5,
        batch_size: int = 32,
        scale: float = 20.0,
        max_query_tokens: int = 64,
        max_document_tokens: int = 256,
        seed: int = 0,
    ) -> None:
        self.base_model = Path(base_model)
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.scale = scale
        self.max_query_tokens = max_query_tokens
        self.max_document_tokens = max_document_tokens
        self.seed = seed
        # torch and transformers are untyped here (and optional); both are set by warm_up().
        self._model: Any = None
        self._tokenizer: Any = None

    def warm_up(self) -> None:
        if self._model is not None:
            return
        require_training_stack(self.base_model)
        from transformers import AutoModel, AutoTokenizer

        self._tokenizer = AutoTokenizer.from_pretrained(str(self.base_model))
        self._model = AutoModel.from_pretrained(str(self.base_model))

    # --- encoding ---------------------------------------------------------------------------------
    def _embed(self, texts: list[str], max_tokens: int) -> Any:  # a torch tensor
        import torch

        enc = self._tokenizer(texts, truncation=True, max_length=max_tokens, padding=True, return_tensors="pt")
        hidden = self._model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1)

    def encode(self, texts: list[str], max_tokens: int, batch_size: int = 64) -> np.ndarray:
        import torch

        self.warm_up()
        self._model.eval()
        order = np.argsort([-len(t) for t in texts])  # similar lengths together: less padding
        out = np.zeros((len(texts), self._model.config.hidden_size), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                index = order[start : start + batch_size]
                out[index] = self._embed([texts[i] for i in index], max_tokens).numpy()
        return out

    def dev_metrics(self, dev: dict, texts: dict[str, str]) -> dict[str, float]:
        """Dense retrieval over the whole corpus for the dev queries, scored with ranx."""
        from llm_twin.retrieval.evaluation import score_run

        ids = list(texts)
        docs = self.encode([texts[i] for i in ids], self.max_document_tokens)
        qids = sorted(dev["queries"])
        scores = self.encode([dev["queries"][q] for q in qids], self.max_query_tokens) @ docs.T
        run = {}
        for qid, row in zip(qids, scores, strict=True):
            top = np.argsort(-row)[:100]
            run[qid] = {ids[j]: float(row[j]) for j in top}
        return score_run({q: dev["qrels"][q] for q in qids}, run)

    # --- training ---------------------------------------------------------------------------------
    def run(
        self,
        pairs: list[TrainingPair],
        texts: dict[str, str],
        dev: dict | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> TrainingReport:
        """Train in place; ``dev`` ({"queries", "qrels"}) is scored before and after."""
        import torch

        if not pairs:
            raise InvalidInputError(
                "dataset", "no training pairs (no query has both a relevant document and a mined negative)"
            )
        self.warm_up()
        say = progress or (lambda _: None)
        random.seed(self.seed)
        torch.manual_seed(self.seed)
        report = TrainingReport(str(self.base_model), len(pairs), self.epochs, self.learning_rate, self.batch_size)
        t0 = time.perf_counter()
        if dev:
            report.dev["base"] = self.dev_metrics(dev, texts)
            say(f"dev before: {report.dev['base']}")
        steps = -(-len(pairs) // self.batch_size) * self.epochs
        optimizer = torch.optim.AdamW(self._model.parameters(), lr=self.learning_rate, weight_decay=0.01)
        warmup = max(1, int(0.1 * steps))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda i: min(1.0, (i + 1) / warmup) * max(0.0, (steps - i) / steps)
        )
        order = list(pairs)
        for epoch in range(self.epochs):
            random.shuffle(order)
            self._model.train()
            losses = []
            for start in range(0, len(order), self.batch_size):
                batch = _unique_positives(order[start : start + self.batch_size])
                queries = self._embed([p.query for p in batch], self.max_query_tokens)
                documents = [p.positive_id for p in batch] + [random.choice(p.negative_ids) for p in batch]
                vectors = self._embed([texts[d] for d in documents], self.max_document_tokens)
                logits = self.scale * queries @ vectors.T
                loss = torch.nn.functional.cross_entropy(logits, torch.arange(len(batch)))
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self._model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad()
                losses.append(float(loss.item()))
            report.losses.append(round(float(np.mean(losses)), 4))
            say(f"epoch {epoch + 1}/{self.epochs}: loss {report.losses[-1]} ({time.perf_counter() - t0:.0f} s)")
        if dev:
            report.dev["tuned"] = self.dev_metrics(dev, texts)
            say(f"dev after: {report.dev['tuned']}")
        report.seconds = round(time.perf_counter() - t0, 1)
        return report

    # --- output -----------------------------------------------------------------------------------
    def save(self, out: Path, report: TrainingReport) -> Path:
        """HF weights, ``model.onnx`` (last_hidden_state; our embedder pools) and the report, written
        to a temporary directory first so that ``out`` is complete or absent."""
        import torch

        out = Path(out)
        staging = out.with_name(f".{out.name}.partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            self._model.eval()
            self._model.save_pretrained(str(staging))
            self._tokenizer.save_pretrained(str(staging))
            for name in TOKENIZER_FILES:  # the fast tokenizer.json is what our runtime reads
                if not (staging / name).exists() and (self.base_model / name).exists():
                    shutil.copy(self.base_model / name, staging / name)
            sample = torch.ones(2, 16, dtype=torch.long)
            names = ["input_ids", "attention_mask", "token_type_ids"]
            torch.onnx.export(
                _LastHiddenState(self._model),
                (sample, sample, torch.zeros_like(sample)),
                str(staging / "model.onnx"),
                input_names=names,
                output_names=["last_hidden_state"],
                dynamic_axes={n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]},
                opset_version=17,
                dynamo=False,
            )
            (staging / "training.json").write_text(json.dumps(report.as_dict(), indent=2) + "\n", encoding="utf-8")
            staging.rename(out)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return out


def _unique_positives(batch: list[TrainingPair]) -> list[TrainingPair]:
    """One pair per positive document: a repeated positive would be an in-batch false negative."""
    seen: set[str] = set()
    kept = []
    for pair in batch:
        if pair.positive_id not in seen:
            seen.add(pair.positive_id)
            kept.append(pair)
    return kept


def _LastHiddenState(model: Any) -> Any:
    import torch

    class Wrapper(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    return Wrapper(model)
