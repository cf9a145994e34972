"""Which helper model the factory picks: ``helper_llm_local_model=auto`` and explicit choices."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_twin import models
from llm_twin.llm import factory
from llm_twin.llm.factory import SMALL_HELPER_MODEL, resolve_helper_model
from llm_twin.settings import load_settings


def installed(*names: str):
    def available(name: str, models_dir: Path) -> bool:
        return name in names

    return available


def test_auto_picks_the_small_helper_for_the_default_generation_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "packaged_gguf_available", installed(SMALL_HELPER_MODEL))
    settings = load_settings(llm_model="qwen2.5-coder-1.5b-instruct", helper_llm_local_model="auto")
    assert resolve_helper_model(settings) == SMALL_HELPER_MODEL


@pytest.mark.parametrize(
    ("llm_model", "available"),
    [
        ("qwen2.5-coder-1.5b-instruct", ()),  # the 0.5B package is not installed
        ("smollm2-135m-instruct", (SMALL_HELPER_MODEL,)),  # already smaller than the helper
        ("/models/my-twin.gguf", (SMALL_HELPER_MODEL,)),  # a custom model: no guess about its size
    ],
)
def test_auto_shares_the_generation_model_otherwise(
    monkeypatch: pytest.MonkeyPatch, llm_model: str, available: tuple[str, ...]
) -> None:
    monkeypatch.setattr(models, "packaged_gguf_available", installed(*available))
    assert resolve_helper_model(load_settings(llm_model=llm_model, helper_llm_local_model="auto")) is None


def test_an_explicit_choice_is_kept_and_blank_shares(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "packaged_gguf_available", installed(SMALL_HELPER_MODEL))
    assert resolve_helper_model(load_settings(helper_llm_local_model="/m/helper.gguf")) == "/m/helper.gguf"
    assert resolve_helper_model(load_settings(helper_llm_local_model="")) is None


def test_packaged_availability_checks_the_assembled_file_or_every_part(tmp_path: Path) -> None:
    spec = models.PACKAGED_GGUF[SMALL_HELPER_MODEL]
    missing = not all(models.package_dir(m) for m in spec.parts)
    if missing:
        assert not models.packaged_gguf_available(SMALL_HELPER_MODEL, tmp_path)
        (tmp_path / spec.filename).write_bytes(b"gguf")  # an assembled file (size unchecked for this one)
    assert models.packaged_gguf_available(SMALL_HELPER_MODEL, tmp_path)
    assert not models.packaged_gguf_available("no-such-model", tmp_path)


def test_factory_builds_the_helper_on_the_resolved_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "packaged_gguf_available", installed(SMALL_HELPER_MODEL))
    settings = load_settings(llm_backend="llama-cpp", helper_llm_backend="llama-cpp", helper_llm_local_model="auto")
    helper = factory.build_helper_llm(settings)
    assert helper is not None and helper.model_name == SMALL_HELPER_MODEL
