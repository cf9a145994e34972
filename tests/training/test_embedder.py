"""Fine-tuning end to end on a tiny set (needs `make install-train`; skipped where torch is absent)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llm_twin.embedding.onnx_embedder import OnnxSentenceEmbedder
from llm_twin.models import default_base_model
from llm_twin.training.embedder import SentenceEmbedderTrainer
from llm_twin.training.pairs import TrainingPair

pytestmark = pytest.mark.slow

TEXTS = {
    "d1": "Vitamin D\nVitamin D supplementation lowers fracture risk in older adults.",
    "d2": "Malaria\nArtemisinin resistance in Plasmodium falciparum spreads in Southeast Asia.",
    "d3": "Statins\nStatin therapy reduces LDL cholesterol and cardiovascular events.",
    "d4": "Sleep\nShort sleep duration is associated with obesity in children.",
}
PAIRS = [
    TrainingPair("q1", "does vitamin d prevent fractures", "d1", ["d2", "d3"]),
    TrainingPair("q2", "drug resistant malaria parasites", "d2", ["d1", "d4"]),
    TrainingPair("q3", "cholesterol lowering drugs and heart attacks", "d3", ["d4"]),
    TrainingPair("q4", "children who sleep less gain weight", "d4", ["d3"]),
]


def test_train_save_and_load_in_our_runtime(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    trainer = SentenceEmbedderTrainer(default_base_model(), epochs=2, batch_size=4, learning_rate=5e-5)
    dev = {"queries": {"q1": "vitamin d and bone fractures"}, "qrels": {"q1": {"d1": 1}}}
    report = trainer.run(PAIRS, TEXTS, dev)
    assert len(report.losses) == 2 and all(np.isfinite(report.losses))
    assert set(report.dev) == {"base", "tuned"} and report.dev["tuned"]["recall@100"] == 1.0
    out = trainer.save(tmp_path / "tuned", report)
    assert json.loads((out / "training.json").read_text())["pairs"] == 4
    assert not (tmp_path / ".tuned.partial").exists()

    # The exported graph gives the trained model's vectors, at any batch size and length.
    texts = [TEXTS["d1"], "a short query", TEXTS["d2"] * 3]
    torch_vectors = trainer.encode(texts, 256)
    onnx = OnnxSentenceEmbedder(str(out), precision="as-is", cache_dir=tmp_path / "cache")
    assert np.allclose(onnx.embed(texts), torch_vectors, atol=1e-4)
    assert onnx.packed  # our TorchScript export (a mask per layer) is packable too
    quantized = OnnxSentenceEmbedder(str(out), cache_dir=tmp_path / "cache").embed(texts)
    assert (quantized * torch_vectors).sum(axis=1).min() > 0.95
