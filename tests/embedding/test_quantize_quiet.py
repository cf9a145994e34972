"""The first start builds the quantized (and packed) embedder copies without ONNX Runtime's
"consider pre-processing before quantization" advice, which a user can do nothing with."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from llm_twin.embedding.onnx_embedder import OnnxSentenceEmbedder

pytestmark = pytest.mark.slow


def test_first_start_prints_no_preprocessing_advice(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    embedder = OnnxSentenceEmbedder(cache_dir=tmp_path / "models")
    embedder.warm_up()
    assert embedder.model_id.endswith("@int8-dynamic")  # the quantized copy was built here
    assert embedder.embed(["hello"]).shape == (1, 384)
    assert not [r for r in caplog.records if "pre-processing" in r.getMessage()]
    other = logging.getLogger("unrelated")
    other.warning("still shown")  # the filter was scoped to the quantization call
    assert any(r.getMessage() == "still shown" for r in caplog.records)
