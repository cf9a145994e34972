"""Sequence packing for BERT-style ONNX encoders: several texts share one row, nothing is padded.

Padding a batch to its longest member wastes work: three questions of 13, 7 and 10 tokens run as
39 tokens instead of 30. The packed copy of the graph takes two more inputs, explicit
``position_ids`` (restarting at 0 for each text) and an additive ``attention_bias`` of shape
[rows, 1, width, width] that stops attention across texts, so every text gets the hidden states
it would get on its own. The copy is built from the fp32 graph, checked against it on probe
texts, then quantized like the plain model; a graph we cannot rewrite keeps the padded path.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from llm_twin.embedding.quantize import SUFFIX, file_digest, fold_weights, without_preprocessing_advice

PACKED = "packed"
POSITION_IDS = "position_ids"
ATTENTION_BIAS = "attention_bias"
#: Rows are never wider than the longest text of a call, or than this: attention and softmax cost
#: grow with the square of the width, so packing short texts into long rows would cost more than
#: the padding it saves.
MIN_ROW_WIDTH = 64
#: Cosine between packed and one-at-a-time fp32 runs that the rewrite must reach (float noise only).
MIN_COSINE = 0.9999
PROBES = ["Structural pattern matching in Python.", "Type hints.", "How do wheels and sdists differ when packaging?"]


class UnsupportedGraph(ValueError):
    """The graph does not have the shape the rewrite expects (one position-embedding Gather, an
    additive mask in front of every attention Softmax)."""


def packed_path(source: Path, cache_dir: Path, quantized: bool) -> Path:
    tail = f"{SUFFIX}-{PACKED}" if quantized else PACKED
    return Path(cache_dir) / f"{Path(source).stem}-{file_digest(source)}-{tail}.onnx"


def packed_model(source: Path, tokenizer: Path, cache_dir: Path, quantized: bool) -> Path | None:
    """The cached packed copy of ``source`` (dynamic-int8 when ``quantized``), built on first use;
    None when the graph cannot be packed (remembered with a marker file, so start-up stays cheap)."""
    target = packed_path(source, cache_dir, quantized)
    marker = target.with_suffix(".unsupported")
    if target.is_file():
        return target
    if marker.is_file():
        return None
    import onnx

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".pack-") as tmp:
        fp32 = fold_weights(Path(source), Path(tmp)) if quantized else Path(source)
        packed = Path(tmp) / "packed.onnx"
        try:
            onnx.save(pack_graph(onnx.load(str(fp32))), str(packed))
            check_packed(fp32, packed, tokenizer)
        except UnsupportedGraph:
            marker.write_text("this graph cannot be packed; the padded path is used\n")
            return None
        if quantized:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            staged = Path(tmp) / "packed-int8.onnx"
            with without_preprocessing_advice():
                quantize_dynamic(str(packed), str(staged), weight_type=QuantType.QInt8, per_channel=True)
            packed = staged
        os.replace(packed, target)
    return target


def pack_graph(model: Any) -> Any:
    """Rewire ``model`` (an onnx.ModelProto) to take position ids and an attention bias."""
    from onnx import TensorProto, helper

    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    inputs = {i.name for i in graph.input}
    if "attention_mask" not in inputs or "input_ids" not in inputs:
        raise UnsupportedGraph("inputs input_ids and attention_mask expected")

    positions = [n for n in graph.node if n.op_type == "Gather" and "position_embeddings" in n.input[0]]
    softmaxes = [n for n in graph.node if n.op_type == "Softmax"]
    if len(positions) != 1 or not softmaxes:
        raise UnsupportedGraph("one position-embedding Gather and attention Softmax nodes expected")
    positions[0].input[1] = POSITION_IDS
    scores = {n.input[0] for n in softmaxes}
    if not all(name in producer and producer[name].op_type == "Add" for name in scores):
        raise UnsupportedGraph("an additive mask in front of each Softmax expected")
    # One pass in topological order (as ONNX stores nodes): track what depends on attention_mask and
    # swap each Softmax's mask operand for the bias. Once a layer's mask is swapped, the next layer's
    # scores no longer depend on attention_mask, so exactly one operand of each Add may.
    from_mask = {"attention_mask"}
    for node in graph.node:
        if node.op_type == "Add" and node.output[0] in scores:
            masked = [i for i, name in enumerate(node.input) if name in from_mask]
            if len(masked) != 1:
                raise UnsupportedGraph("exactly one Softmax operand should come from attention_mask")
            node.input[masked[0]] = ATTENTION_BIAS
        if any(name in from_mask for name in node.input):
            from_mask.update(node.output)

    graph.input.append(helper.make_tensor_value_info(POSITION_IDS, TensorProto.INT64, ["rows", "width"]))
    graph.input.append(helper.make_tensor_value_info(ATTENTION_BIAS, TensorProto.FLOAT, ["rows", 1, "width", "width"]))
    # Drop what the old mask and position computation leave unused, inputs included.
    needed = {out.name for out in graph.output}
    kept = []
    for node in reversed(list(graph.node)):
        if any(out in needed for out in node.output):
            kept.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    live_inputs = [i for i in graph.input if i.name in needed]
    del graph.input[:]
    graph.input.extend(live_inputs)
    live_init = [i for i in graph.initializer if i.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(live_init)
    return model


def layout(lengths: list[int], capacity: int) -> list[list[int]]:
    """Texts (by index) per row: first fit, longest first; a row holds at most ``capacity`` tokens
    (a longer text gets a row of its own)."""
    rows: list[list[int]] = []
    room: list[int] = []
    for index in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for r, free in enumerate(room):
            if lengths[index] <= free:
                rows[r].append(index)
                room[r] -= lengths[index]
                break
        else:
            rows.append([index])
            room.append(capacity - lengths[index])
    return rows


def packed_feeds(
    token_ids: list[list[int]], capacity: int | None = None
) -> tuple[dict[str, np.ndarray], list[tuple[int, int, int]]]:
    """Inputs for the packed graph, and (row, start, length) of each text in input order.
    Rows hold up to ``capacity`` tokens (default: the longest text, at least ``MIN_ROW_WIDTH``)."""
    lengths = [len(t) for t in token_ids]
    rows = layout(lengths, capacity or max(max(lengths), MIN_ROW_WIDTH))
    width = max(sum(len(token_ids[i]) for i in row) for row in rows)
    ids = np.zeros((len(rows), width), dtype=np.int64)
    positions = np.zeros_like(ids)
    segment = np.full((len(rows), width), -1, dtype=np.int64)  # -1: padding at a row's end
    spans: list[tuple[int, int, int]] = [(0, 0, 0)] * len(token_ids)
    for r, row in enumerate(rows):
        start = 0
        for index in row:
            n = len(token_ids[index])
            ids[r, start : start + n] = token_ids[index]
            positions[r, start : start + n] = np.arange(n)
            segment[r, start : start + n] = index
            spans[index] = (r, start, n)
            start += n
    same = segment[:, :, None] == segment[:, None, :]
    bias = np.where(same, 0.0, np.finfo(np.float32).min).astype(np.float32)[:, None, :, :]
    feeds: dict[str, np.ndarray] = {
        "input_ids": ids,
        "token_type_ids": np.zeros_like(ids),
        "attention_mask": (segment >= 0).astype(np.int64),  # for graphs that still read it elsewhere
        POSITION_IDS: positions,
        ATTENTION_BIAS: bias,
    }
    return feeds, spans


def mean_pool_spans(hidden: np.ndarray, spans: list[tuple[int, int, int]]) -> np.ndarray:
    pooled = np.stack([hidden[r, s : s + n].mean(axis=0) for r, s, n in spans])
    return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)


def check_packed(plain: Path, packed: Path, tokenizer_file: Path) -> None:
    """Probe texts packed in one row must give the vectors each gives alone through ``plain``."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.no_padding()
    token_ids = [e.ids for e in tokenizer.encode_batch(PROBES)]
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the rewrite leaves a few constants ORT reports as unused
    try:
        reference = ort.InferenceSession(str(plain), options, providers=["CPUExecutionProvider"])
        candidate = ort.InferenceSession(str(packed), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # an invalid rewrite fails to load
        raise UnsupportedGraph(f"the packed graph does not load: {error}") from None
    names = {i.name for i in reference.get_inputs()}
    alone = []
    for ids in token_ids:
        row = np.array([ids], dtype=np.int64)
        feeds = {"input_ids": row, "attention_mask": np.ones_like(row)}
        if "token_type_ids" in names:
            feeds["token_type_ids"] = np.zeros_like(row)
        alone.append(mean_pool_spans(reference.run(None, feeds)[0], [(0, 0, len(ids))])[0])
    feeds, spans = packed_feeds(token_ids, capacity=sum(len(t) for t in token_ids))
    wanted = {i.name for i in candidate.get_inputs()}
    together = mean_pool_spans(candidate.run(None, {k: v for k, v in feeds.items() if k in wanted})[0], spans)
    cosine = float(np.min(np.sum(together * np.stack(alone), axis=1)))
    if not cosine >= MIN_COSINE:
        raise UnsupportedGraph(f"packed vectors differ from one-at-a-time ones (cosine {cosine:.5f})")
