"""Cross-encoder training end to end on a tiny set (needs `make install-train`; skipped where torch is absent)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from llm_twin.models import default_base_model
from llm_twin.retrieval.rerankers.onnx_cross_encoder import OnnxCrossEncoderReranker
from llm_twin.training.reranker_data import RerankGroup

pytestmark = pytest.mark.slow

DOCS = {
    "vitamin": "Vitamin D\nVitamin D supplementation lowers fracture risk in older adults.",
    "malaria": "Malaria\nArtemisinin resistance in Plasmodium falciparum spreads in Southeast Asia.",
    "statins": "Statins\nStatin therapy reduces LDL cholesterol and cardiovascular events.",
    "sleep": "Sleep\nShort sleep duration is associated with obesity in children.",
}
QUERIES = {
    "vitamin": "does vitamin d prevent fractures",
    "malaria": "drug resistant malaria parasites",
    "statins": "cholesterol lowering drugs and heart attacks",
    "sleep": "children who sleep less gain weight",
}


def groups() -> list[RerankGroup]:
    return [
        RerankGroup(f"q-{key}", QUERIES[key], DOCS[key], [t for k, t in DOCS.items() if k != key], "test", key)
        for key in DOCS
    ]


def test_train_export_and_load_as_cross_encoder(tmp_path):
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from llm_twin.training.reranker import CrossEncoderTrainer

    trainer = CrossEncoderTrainer(
        default_base_model(),
        layers=2,
        epochs=8,
        learning_rate=3e-4,
        batch_groups=2,
        negatives=3,
        max_length=64,
        eval_every=4,
        patience=10,
        max_dev_groups=2,
    )
    report = trainer.run(groups(), groups()[:3], data={"sizes": "tiny"})
    assert report.dev_groups == 2  # a seeded sample keeps each dev check cheap
    assert report.layers == 2 and report.steps == 16 and all(np.isfinite(report.losses))
    assert report.losses[-1] < report.losses[0]  # it learns (the loss starts at ln 4)
    assert report.dev_mrr[0] <= max(report.dev_mrr)
    out = trainer.save(tmp_path / "reranker", report)
    saved = json.loads((out / "training.json").read_text())
    assert saved["data"] == {"sizes": "tiny"} and saved["best_step"] == report.best_step
    assert saved["search_weight"] is None  # no labelled held-out query to choose a weight on
    assert not (tmp_path / ".reranker.partial").exists()

    # A standard HF directory: one logit, two layers, the tokenizer trained with.
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(out))
    assert model.config.num_labels == 1 and model.config.num_hidden_layers == 2
    # The int8 ONNX export scores like the torch model, through our cross-encoder backend.
    reranker = OnnxCrossEncoderReranker(out)
    for query in QUERIES.values():
        passages = list(DOCS.values())
        onnx_scores = reranker.score(query, passages)
        torch_scores = trainer.score([(query, p) for p in passages])
        # int8 weights move the logits a little; this tiny model's scores lie close together, so an
        # absolute bound (not the order) is what the export can promise here.
        assert np.abs(onnx_scores - torch_scores).max() < 0.25, (onnx_scores, torch_scores)


def test_search_weight_is_chosen_on_labelled_held_out_queries():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from llm_twin.training.reranker import SEARCH_WEIGHTS, CrossEncoderTrainer, model_card

    trainer = CrossEncoderTrainer(
        default_base_model(), layers=2, epochs=1, batch_groups=2, negatives=3, max_length=64, eval_every=100
    )
    # The search puts every positive first: fused at weight 4 the positive wins whatever the model says.
    first = [replace(g, method="qrels:train", search_scores=[1.0, 0.5, 0.4, 0.3]) for g in groups()]
    by_weight = trainer.dev_mrr_by_search_weight(first, SEARCH_WEIGHTS)
    assert set(by_weight) == set(SEARCH_WEIGHTS) and by_weight[4.0] == 1.0
    assert by_weight[0.0] == trainer.dev_mrr(first)  # weight 0: the model alone
    # ... and every positive last: at weight 4 each ranks last of 4.
    last = [replace(g, search_scores=[0.0, 0.9, 0.8, 1.0]) for g in first]
    assert trainer.dev_mrr_by_search_weight(last, [4.0]) == {4.0: 0.25}

    report = trainer.run(groups(), first)
    best = max(report.dev_mrr_by_search_weight.values())
    assert best == 1.0 and report.search_fusion == "score"
    assert report.dev_mrr_by_search_weight[f"{report.search_weight:g}"] == best
    assert f"Search weight: {report.search_weight:g}, the best held-out MRR" in model_card(report)
    # Held-out synthetic queries choose nothing: the search already finds them all.
    synthetic = [replace(g, method="llm:fake") for g in first]
    assert trainer.run(groups(), synthetic).search_weight is None


def test_cli_trains_on_a_corpus_and_auto_picks_the_model(tmp_path, monkeypatch, small_corpus):
    """`llm-twin train reranker --corpus`: chunks as passages (ICT and title queries: no LLM here),
    the round-trip filter over the real store, training, export; `auto` then uses the model."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from typer.testing import CliRunner

    from llm_twin.cli import app
    from llm_twin.retrieval.rerankers.factory import build_reranker
    from llm_twin.settings import load_settings

    data_dir = tmp_path / "data"
    monkeypatch.setenv("LLM_TWIN_DATA_DIR", str(data_dir))
    out = data_dir / "models" / "cross-encoder" / "ours"
    args = ["train", "reranker", "--out", str(out), "--synthetic", "0", "--ict", "12", "--titles", "12"]
    args += ["--layers", "1"]
    args += ["--max-length", "64", "--negatives", "2", "--dev-fraction", "0.3"]
    for path in small_corpus:
        args += ["--corpus", str(path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    sizes = json.loads((data_dir / "rerank-cache" / "corpus" / "data.json").read_text())
    by_method = sizes["groups_by_method"]
    assert set(by_method) == {"ict-sentence", "title"}
    assert sum(by_method.values()) == sizes["train_groups"] + sizes["dev_groups"]
    assert sizes["round_trip"]["kept"] > 0
    card = (out / "README.md").read_text()
    assert "--ict 12 --titles 12" in card and "ict-sentence" in card
    reranker = build_reranker(load_settings(data_dir=data_dir))
    assert isinstance(reranker, OnnxCrossEncoderReranker) and str(out) in reranker.description
