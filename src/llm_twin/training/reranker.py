"""A cross-encoder of our own: all-MiniLM-L6-v2's encoder with a one-logit head, trained listwise.

Each step scores groups of (query, positive, hard negatives) jointly and applies cross-entropy over
every group's logits with the positive as the target (listwise softmax loss, as in Promptagator's
and InPars-v2's rerankers). A held-out slice of groups is scored every ``eval_every`` steps: the
MRR of the positive among the other documents of its query's top 20 (``reranker_data``), i.e. of
reranking what the service reranks. The best weights are kept and training stops after ``patience``
checks without improvement. Then, when some held-out queries are labelled, the model is fused with
the search at each of ``SEARCH_WEIGHTS`` on them and the best weight goes into ``training.json``,
which the service fuses at. The result is a standard Hugging Face directory
(``AutoModelForSequenceClassification``, ``num_labels=1``, which sentence-transformers'
``CrossEncoder`` loads too) plus ``model.onnx``, dynamically quantized to int8 for our ONNX backend.
Needs torch and transformers (``make install-train``); the service never imports this module.
"""

from __future__ import annotations

import copy
import json
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llm_twin.errors import InvalidInputError
from llm_twin.retrieval.rerankers.base import DEFAULT_SEARCH_WEIGHT, fuse_with_search_score
from llm_twin.training.embedder import TOKENIZER_FILES, require_training_stack
from llm_twin.training.reranker_data import RerankGroup

#: Search weights tried on the labelled held-out queries after training (0: the model alone).
SEARCH_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0)


@dataclass
class RerankerTrainingReport:
    base_model: str
    layers: int
    groups: int
    dev_groups: int
    negatives_per_group: int
    epochs: int
    learning_rate: float
    batch_groups: int
    max_length: int
    seed: int
    data: dict[str, Any] = field(default_factory=dict)  # sizes and provenance counts
    command: str = ""  # what reproduces the model
    steps: int = 0
    best_step: int = 0
    stopped_early: bool = False
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)  # mean loss between dev checks
    dev_mrr: list[float] = field(default_factory=list)  # dev MRR at each check (first: before training)
    #: Fused by score with the search at each weight, on the labelled held-out queries; the best is
    #: ``search_weight``, which the service uses unless LLM_TWIN_RERANK_SEARCH_WEIGHT is set.
    dev_mrr_by_search_weight: dict[str, float] = field(default_factory=dict)
    search_weight: float | None = None
    search_fusion: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


class CrossEncoderTrainer:
    """Trains a cross-encoder from a BERT-style encoder directory (e.g. the bundled MiniLM)."""

    def __init__(
        self,
        base_model: Path,
        layers: int | None = None,
        epochs: int = 3,
        # 1e-4 rather than the usual 2e-5..3e-5: with a new head and only hundreds of steps on a CPU,
        # the held-out MRR after one SciFact epoch was 0.66 at 3e-5 and 0.75 at 1e-4 (best at step 500).
        learning_rate: float = 1e-4,
        batch_groups: int = 2,
        negatives: int = 7,
        max_length: int = 256,
        eval_every: int = 200,
        patience: int = 3,
        # A check scores every candidate of each dev group (~20 pairs): 120 groups took ~50 s on
        # 2 cores, about a fifth of the time of 200 training steps (SciFact, 4 layers, 192 tokens).
        max_dev_groups: int = 120,
        seed: int = 0,
        threads: int | None = None,
        max_minutes: float | None = None,
    ) -> None:
        self.base_model = Path(base_model)
        self.layers = layers
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.batch_groups = batch_groups
        self.negatives = negatives
        self.max_length = max_length
        self.eval_every = eval_every
        self.patience = patience
        self.max_dev_groups = max_dev_groups
        self.seed = seed
        self.threads = threads
        self.max_minutes = max_minutes
        self._model: Any = None
        self._tokenizer: Any = None

    def warm_up(self) -> None:
        if self._model is not None:
            return
        require_training_stack(self.base_model)
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if self.threads:
            torch.set_num_threads(self.threads)
        torch.manual_seed(self.seed)  # the new head's initial weights
        extra: dict[str, Any] = {"num_hidden_layers": self.layers} if self.layers else {}
        # No dropout: the sentence embedder was trained with mean pooling, so its [CLS] state (what
        # the head reads) barely differs between pairs (std ~0.008 here), and dropout noise drowned
        # that signal: with it the listwise loss stayed at ln(group size); without it, it falls.
        extra.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, classifier_dropout=0.0)
        self._tokenizer = AutoTokenizer.from_pretrained(str(self.base_model))
        self._model = AutoModelForSequenceClassification.from_pretrained(str(self.base_model), num_labels=1, **extra)
        self.layers = self._model.config.num_hidden_layers

    # --- scoring --------------------------------------------------------------------------------
    def _logits(self, queries: list[str], passages: list[str]) -> Any:
        enc = self._tokenizer(
            queries, passages, truncation="longest_first", max_length=self.max_length, padding=True, return_tensors="pt"
        )
        return self._model(**enc).logits[:, 0]

    def score(self, pairs: Sequence[tuple[str, str]], batch_size: int = 32) -> np.ndarray:
        import torch

        self.warm_up()
        self._model.eval()
        out = np.zeros(len(pairs), dtype=np.float32)
        order = np.argsort([-(len(q) + len(p)) for q, p in pairs])
        with torch.inference_mode():
            for start in range(0, len(pairs), batch_size):
                index = order[start : start + batch_size]
                logits = self._logits([pairs[i][0] for i in index], [pairs[i][1] for i in index])
                out[index] = logits.float().numpy()
        return out

    def dev_mrr(self, groups: Sequence[RerankGroup]) -> float:
        """Mean reciprocal rank of each positive among all of its own group's passages."""
        if not groups:
            return 0.0
        return _mrr(self._group_scores(groups))

    def dev_mrr_by_search_weight(self, groups: Sequence[RerankGroup], weights: Sequence[float]) -> dict[float, float]:
        """``dev_mrr`` with the model's scores fused with the search's by score at each weight, as the
        service fuses them (each group needs ``search_scores``)."""
        rows = self._group_scores(groups)
        return {
            w: _mrr(
                [
                    np.asarray(fuse_with_search_score(r.tolist(), g.search_scores, w))
                    for g, r in zip(groups, rows, strict=True)
                ]
            )
            for w in weights
        }

    def _group_scores(self, groups: Sequence[RerankGroup]) -> list[np.ndarray]:
        """The model's scores of each group's positive then negatives."""
        scores = self.score([(g.query, p) for g in groups for p in [g.positive, *g.negatives]])
        rows, at = [], 0
        for g in groups:
            rows.append(scores[at : at + 1 + len(g.negatives)])
            at += 1 + len(g.negatives)
        return rows

    # --- training -------------------------------------------------------------------------------
    def run(
        self,
        groups: list[RerankGroup],
        dev: list[RerankGroup],
        data: dict[str, Any] | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> RerankerTrainingReport:
        import torch

        if not groups:
            raise InvalidInputError("corpus", "no training groups (no query kept with a positive and negatives)")
        self.warm_up()
        say = progress or (lambda _: None)
        rng = random.Random(self.seed)
        torch.manual_seed(self.seed)
        if len(dev) > self.max_dev_groups:
            dev = random.Random(self.seed).sample(list(dev), self.max_dev_groups)
        report = RerankerTrainingReport(
            str(self.base_model),
            int(self.layers or 0),
            len(groups),
            len(dev),
            self.negatives,
            self.epochs,
            self.learning_rate,
            self.batch_groups,
            self.max_length,
            self.seed,
            data=data or {},
        )
        t0 = time.perf_counter()
        best = self.dev_mrr(dev) if dev else 0.0
        report.dev_mrr.append(best)
        say(f"dev MRR before training: {best} ({len(dev)} groups)")
        best_state = copy.deepcopy(self._model.state_dict())
        steps = -(-len(groups) // self.batch_groups) * self.epochs
        optimizer = torch.optim.AdamW(self._model.parameters(), lr=self.learning_rate, weight_decay=0.01)
        warmup = max(1, int(0.1 * steps))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda i: min(1.0, (i + 1) / warmup) * max(0.0, (steps - i) / steps)
        )
        step, stale, window = 0, 0, []
        stop = False
        for _epoch in range(self.epochs):
            order = list(groups)
            rng.shuffle(order)
            for start in range(0, len(order), self.batch_groups):
                self._model.train()
                batch = order[start : start + self.batch_groups]
                loss = self._group_loss(batch, rng)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self._model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad()
                step += 1
                window.append(float(loss.item()))
                if step % 10 == 0:
                    rate = (time.perf_counter() - t0) / step
                    say(
                        f"step {step}/{steps} loss {np.mean(window[-10:]):.3f} "
                        f"({rate:.1f} s/step, ETA {rate * (steps - step) / 60:.1f} min)"
                    )
                out_of_time = self.max_minutes is not None and time.perf_counter() - t0 > 60 * self.max_minutes
                if dev and (step % self.eval_every == 0 or step == steps or out_of_time):
                    mrr = self.dev_mrr(dev)
                    report.dev_mrr.append(mrr)
                    report.losses.append(round(float(np.mean(window)), 4))
                    window = []
                    say(f"step {step}: dev MRR {mrr} (best {best})")
                    if mrr > best:
                        best, stale, report.best_step = mrr, 0, step
                        best_state = copy.deepcopy(self._model.state_dict())
                    else:
                        stale += 1
                        if stale >= self.patience:
                            say(f"early stop: no dev gain in {stale} checks")
                            report.stopped_early = True
                            stop = True
                            break
                if out_of_time:
                    say(f"time budget of {self.max_minutes} min spent at step {step}/{steps}")
                    report.stopped_early = True
                    stop = True
                    break
            if stop:
                break
        if not dev:
            best_state = self._model.state_dict()
            report.best_step = step
        self._model.load_state_dict(best_state)
        report.steps = step
        report.seconds = round(time.perf_counter() - t0, 1)
        self._choose_search_weight(dev, report, say)
        return report

    def _choose_search_weight(
        self, dev: Sequence[RerankGroup], report: RerankerTrainingReport, say: Callable[[str], None]
    ) -> None:
        # Labelled queries only: a synthetic query is kept only when the search already finds its
        # source, so held-out synthetic queries cannot tell weights apart (SciFact: the search's MRR
        # on them was 0.993, and every weight from 1 to 4 scored the same).
        held_out = [g for g in dev if g.labelled and g.search_scores]
        if not held_out:
            return
        by_weight = self.dev_mrr_by_search_weight(held_out, SEARCH_WEIGHTS)
        # Ties go to the weight nearest the default.
        chosen = max(by_weight, key=lambda w: (by_weight[w], -abs(w - DEFAULT_SEARCH_WEIGHT)))
        report.dev_mrr_by_search_weight = {f"{w:g}": m for w, m in by_weight.items()}
        report.search_weight, report.search_fusion = chosen, "score"
        say(f"search weight {chosen:g} chosen on {len(held_out)} labelled held-out queries: {by_weight}")

    def _group_loss(self, batch: Sequence[RerankGroup], rng: random.Random) -> Any:
        import torch

        queries, passages, sizes = [], [], []
        for group in batch:
            negatives = list(group.negatives)
            if len(negatives) > self.negatives:
                negatives = rng.sample(negatives, self.negatives)
            items = [group.positive, *negatives]
            queries += [group.query] * len(items)
            passages += items
            sizes.append(len(items))
        logits = self._logits(queries, passages)
        losses = []
        at = 0
        for n in sizes:  # listwise: softmax over the group, the positive (index 0) is the target
            row = logits[at : at + n].unsqueeze(0)
            losses.append(torch.nn.functional.cross_entropy(row, torch.zeros(1, dtype=torch.long)))
            at += n
        return torch.stack(losses).mean()

    # --- output ---------------------------------------------------------------------------------
    def save(self, out: Path, report: RerankerTrainingReport, weights: bool = True) -> Path:
        """HF directory (config, tokenizer, weights unless ``weights`` is False), ``model.onnx``
        (dynamic int8, logits [batch, 1]) and ``training.json``; written to a staging directory
        first, so ``out`` is complete or absent."""
        out = Path(out)
        staging = out.with_name(f".{out.name}.partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            self._model.eval()
            if weights:
                self._model.save_pretrained(str(staging))
            else:
                self._model.config.save_pretrained(str(staging))
            self._tokenizer.model_max_length = self.max_length
            self._tokenizer.save_pretrained(str(staging))
            for name in TOKENIZER_FILES:
                if not (staging / name).exists() and (self.base_model / name).exists():
                    shutil.copy(self.base_model / name, staging / name)
            export_onnx_int8(self._model, staging / "model.onnx")
            (staging / "training.json").write_text(json.dumps(report.as_dict(), indent=2) + "\n", encoding="utf-8")
            (staging / "README.md").write_text(model_card(report), encoding="utf-8")
            if out.exists():
                shutil.rmtree(out)
            staging.rename(out)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return out


def model_card(report: RerankerTrainingReport) -> str:
    """A short model card: what it is, the data it saw, how to rebuild it, what was measured."""
    data = json.dumps(report.data, indent=2)
    curve = ", ".join(str(m) for m in report.dev_mrr)
    return f"""# Cross-encoder reranker ({report.layers} layers, trained by `llm-twin train reranker`)

A one-logit cross-encoder (`AutoModelForSequenceClassification`, `num_labels=1`) initialised from
{report.base_model}, trained listwise (one positive and {report.negatives_per_group} hard negatives
from our hybrid search per query, cross-entropy over the group), max {report.max_length} tokens per
pair, seed {report.seed}. `model.onnx` is the dynamic-int8 export our `cross-encoder` backend loads.

- Use: `LLM_TWIN_RERANK_MODEL=<this directory>`, or place it under `DATA_DIR/models/cross-encoder/`
  where `LLM_TWIN_RERANK_BACKEND=auto` finds it.
- Reproduce: `{report.command or "llm-twin train reranker ..."}`
- Training: {report.groups} groups, {report.steps} steps of {report.batch_groups} groups
  (best at step {report.best_step}{", stopped early" if report.stopped_early else ""}), {report.seconds} s.
- Held-out groups ({report.dev_groups}): MRR of the positive among the other documents of the
  search's top 20 for its query, before training and at each check: {curve}.
- Search weight: {_search_weight_line(report)}

Data (sizes and provenance; `ict-sentence` is weak supervision, a sentence of the passage as the
query and the passage shown without it; `title`, a document's title as the query and every passage
shown without its title line; `llm:<model>` queries were written by the local LLM; all kept only
when our hybrid search finds their source in its top results):

```json
{data}
```
"""


def _search_weight_line(report: RerankerTrainingReport) -> str:
    if report.search_weight is None:
        return (
            f"none chosen (no labelled held-out queries), so the service fuses at {DEFAULT_SEARCH_WEIGHT:g} "
            "unless LLM_TWIN_RERANK_SEARCH_WEIGHT is set."
        )
    tried = ", ".join(f"{w}: {m}" for w, m in report.dev_mrr_by_search_weight.items())
    return (
        f"{report.search_weight:g}, the best held-out MRR fused by score ({tried}); the service fuses at it "
        "unless LLM_TWIN_RERANK_SEARCH_WEIGHT is set."
    )


def _mrr(rows: Sequence[np.ndarray]) -> float:
    """Mean reciprocal rank of each row's first entry (the positive) among the row."""
    return round(sum(1.0 / (1 + int((r[1:] > r[0]).sum())) for r in rows) / len(rows), 4) if rows else 0.0


def export_onnx_int8(model: Any, target: Path) -> Path:
    """fp32 ONNX export (dynamic batch and length), then dynamic int8 per-channel MatMuls, the
    quantization our embedder uses (``embedding.quantize``)."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32 = target.with_name("fp32.onnx")
    sample = torch.ones(2, 16, dtype=torch.long)
    names = ["input_ids", "attention_mask", "token_type_ids"]

    class Logits(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits

    torch.onnx.export(
        Logits(model),
        (sample, sample, torch.zeros_like(sample)),
        str(fp32),
        input_names=names,
        output_names=["logits"],
        dynamic_axes={**{n: {0: "batch", 1: "tokens"} for n in names}, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    quantize_dynamic(str(fp32), str(target), weight_type=QuantType.QInt8, per_channel=True)
    fp32.unlink()
    return target
