"""Sequence packing: the row layout, the feeds, and the rewritten graph against the real MiniLM."""

from __future__ import annotations

import numpy as np
import pytest

from llm_twin.embedding.onnx_embedder import OnnxSentenceEmbedder
from llm_twin.embedding.packing import (
    ATTENTION_BIAS,
    MIN_ROW_WIDTH,
    POSITION_IDS,
    UnsupportedGraph,
    layout,
    pack_graph,
    packed_feeds,
    packed_model,
)

TEXTS = [
    "How does async and await work?",
    "coroutines",
    "Structural pattern matching compares a subject against patterns, binds names and runs the first "
    "case that matches; guards add conditions and class patterns match attributes.",
    "PEP 492",
]


def test_layout_packs_longest_first_within_capacity():
    rows = layout([13, 7, 10, 30, 3], capacity=30)
    assert rows == [[3], [0, 2, 1], [4]]
    assert all(sum([13, 7, 10, 30, 3][i] for i in row) <= 30 for row in rows)
    assert layout([40, 5], capacity=30) == [[0], [1]]  # a longer text gets a row of its own


def test_packed_feeds_restart_positions_and_block_attention_across_texts():
    feeds, spans = packed_feeds([[101, 7, 102], [101, 102], [101, 8, 9, 102]])
    assert feeds["input_ids"].shape == (1, 9)  # one row: 9 tokens, nothing padded
    assert spans == [(0, 4, 3), (0, 7, 2), (0, 0, 4)]  # longest placed first
    assert feeds[POSITION_IDS][0].tolist() == [0, 1, 2, 3, 0, 1, 2, 0, 1]
    bias = feeds[ATTENTION_BIAS][0, 0]
    assert bias.shape == (9, 9)
    assert (bias[:4, :4] == 0).all() and (bias[4:7, 4:7] == 0).all() and (bias[7:, 7:] == 0).all()
    assert (bias[:4, 4:] < -1e30).all() and (bias[4:7, :4] < -1e30).all()
    assert feeds["attention_mask"].tolist() == [[1] * 9]


def test_rows_stay_narrow_and_padding_is_masked():
    long = list(range(100))
    feeds, spans = packed_feeds([long, [1] * 60, [2] * 30])
    assert feeds["input_ids"].shape[1] == 100  # never wider than the longest text
    assert feeds["input_ids"].shape[0] == 2  # the 60 and 30 share a row
    row, _start, _n = spans[1]
    assert feeds["attention_mask"][row].tolist() == [1] * 90 + [0] * 10
    assert (feeds[ATTENTION_BIAS][row, 0, :90, 90:] < -1e30).all()  # no text attends to padding
    assert packed_feeds([[1] * 5, [2] * 5])[0]["input_ids"].shape == (1, 10)  # short texts: up to MIN_ROW_WIDTH
    assert MIN_ROW_WIDTH >= 32


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


def test_packed_fp32_gives_the_vectors_of_one_text_at_a_time(cache):
    packed = OnnxSentenceEmbedder(precision="as-is", cache_dir=cache)
    plain = OnnxSentenceEmbedder(precision="as-is", cache_dir=cache, packing=False)
    together = packed.embed(TEXTS)
    assert packed.packed and not plain.packed
    alone = np.stack([plain.embed([t])[0] for t in TEXTS])
    assert np.sum(together * alone, axis=1) == pytest.approx(np.ones(len(TEXTS)), abs=1e-5)
    assert packed.model_id == plain.model_id  # same vectors: no re-embedding on a switch
    assert next(cache.glob("*-packed.onnx")).is_file()


def test_packed_int8_agrees_with_the_padded_int8(cache):
    packed = OnnxSentenceEmbedder(cache_dir=cache)
    plain = OnnxSentenceEmbedder(cache_dir=cache, packing=False)
    assert np.sum(packed.embed(TEXTS) * plain.embed(TEXTS), axis=1).min() > 0.98  # int8 scales vary per call
    assert packed.packed and packed.model_id == plain.model_id
    assert next(cache.glob("*-int8-dynamic-packed.onnx")).is_file()
    # Retrieval order is what matters: the same nearest text for each query either way.
    queries = ["how do async functions wait", "match statement patterns", "which PEP"]
    for embedder in (packed, plain):
        scores = embedder.embed(queries) @ embedder.embed(TEXTS).T
        assert scores.argmax(axis=1).tolist() == [0, 2, 3]


def _graph_without_attention(path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Cast", ["input_ids"], ["last_hidden_state"], to=TensorProto.FLOAT)],
        "no-attention",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "t"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["b", "t"]),
        ],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["b", "t"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return model


def test_a_graph_that_cannot_be_packed_keeps_the_padded_path(tmp_path):
    source = tmp_path / "model.onnx"
    model = _graph_without_attention(source)
    with pytest.raises(UnsupportedGraph):
        pack_graph(model)
    assert packed_model(source, tmp_path / "tokenizer.json", tmp_path / "cache", quantized=False) is None
    markers = list((tmp_path / "cache").glob("*.unsupported"))
    assert len(markers) == 1  # remembered: the next start-up does not parse the graph again
    assert packed_model(source, tmp_path / "tokenizer.json", tmp_path / "cache", quantized=False) is None
