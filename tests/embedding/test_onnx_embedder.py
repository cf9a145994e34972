"""The ONNX embedder: the dynamic int8 copy (built once, cached by content) against the packaged model."""

from __future__ import annotations

import numpy as np

from llm_twin.embedding.onnx_embedder import OnnxSentenceEmbedder
from llm_twin.embedding.quantize import dynamic_int8_path, is_dynamically_quantized
from llm_twin.models import resolve_embedding_model

TEXTS = [
    "Structural pattern matching adds the match statement to Python.",
    "Type hints let static checkers verify function signatures.",
    "Packaging wheels with pip and setuptools.",
]


def test_int8_dynamic_is_built_once_and_named(tmp_path):
    embedder = OnnxSentenceEmbedder(cache_dir=tmp_path)
    embedder.warm_up()
    packaged = resolve_embedding_model("sentence-transformers/all-MiniLM-L6-v2").model
    built = dynamic_int8_path(packaged, tmp_path)
    assert built.is_file() and is_dynamically_quantized(built)
    assert not is_dynamically_quantized(packaged)
    assert embedder.model_id == "sentence-transformers/all-MiniLM-L6-v2@int8-dynamic"
    stamp = built.stat().st_mtime_ns
    again = OnnxSentenceEmbedder(cache_dir=tmp_path)
    again.warm_up()
    assert built.stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".quantize-")]  # no leftovers


def test_int8_dynamic_agrees_with_the_packaged_model(tmp_path):
    fast = OnnxSentenceEmbedder(cache_dir=tmp_path).embed(TEXTS)
    exact = OnnxSentenceEmbedder(precision="as-is").embed(TEXTS)
    assert OnnxSentenceEmbedder(precision="as-is").model_id == "sentence-transformers/all-MiniLM-L6-v2"
    assert fast.shape == exact.shape == (3, 384)
    assert np.allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
    cosine = (fast * exact).sum(axis=1)
    assert cosine.min() > 0.98
    # Same ranking of the texts for a query under both.
    q_fast = OnnxSentenceEmbedder(cache_dir=tmp_path).embed(["how do I build a wheel"])[0]
    q_exact = OnnxSentenceEmbedder(precision="as-is").embed(["how do I build a wheel"])[0]
    # The two unrelated texts score ~0 under both (a near tie whose order depends on the CPU's
    # int8 kernels): compare the best text and every score, not the order of the ties.
    assert int(np.argmax(fast @ q_fast)) == int(np.argmax(exact @ q_exact)) == 2
    assert np.allclose(fast @ q_fast, exact @ q_exact, atol=0.03)


def test_thread_spinning_is_off_unless_asked(tmp_path):
    from llm_twin.settings import Settings

    def spinning(embedder: OnnxSentenceEmbedder) -> str:
        embedder.warm_up()
        return embedder._session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")

    default = OnnxSentenceEmbedder.from_settings(Settings(data_dir=tmp_path))
    assert default.thread_spinning is False and spinning(default) == "0"
    spinning_on = OnnxSentenceEmbedder.from_settings(Settings(data_dir=tmp_path, embedding_thread_spinning=True))
    assert spinning(spinning_on) == "1"
    # Same model, same vectors: spinning is a scheduling choice only.
    assert np.allclose(default.embed(TEXTS), spinning_on.embed(TEXTS), atol=1e-6)
