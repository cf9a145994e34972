"""`llm-twin train embedder`: bad input is refused before any work, with the option named."""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

from corpus_support import write_tiny_beir
from llm_twin.cli import app


@pytest.fixture()
def tiny_train(tmp_path):
    return write_tiny_beir(tmp_path / "tiny", split="train")


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--epochs", "0"], "--epochs"),
        (["--lr", "0"], "--lr"),
        (["--batch-size", "1"], "--batch-size"),
        (["--dev-fraction", "1"], "--dev-fraction"),
        (["--negatives-from", "30", "--negatives-to", "30"], "--negatives-from"),
        (["--fusion", "max"], "--fusion"),
        (["--split", "test"], "--split"),  # the tiny set has train qrels only
    ],
)
def test_bad_options(tiny_train, tmp_path, monkeypatch, args, field):
    monkeypatch.setenv("LLM_TWIN_DATA_DIR", str(tmp_path / "data"))
    result = CliRunner().invoke(
        app, ["train", "embedder", "--dataset", str(tiny_train), "--out", str(tmp_path / "out"), *args]
    )
    assert result.exit_code == 2, result.output
    assert field in result.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "data").exists()


def test_an_existing_output_directory_is_never_overwritten(tiny_train, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    result = CliRunner().invoke(
        app, ["train", "embedder", "--dataset", str(tiny_train), "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 2 and "already exists" in result.stderr
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_without_torch_it_says_how_to_install_it(tiny_train, tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_TWIN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    result = CliRunner().invoke(
        app, ["train", "embedder", "--dataset", str(tiny_train), "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 1
    assert "make install-train" in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "data").exists()  # failed before mining


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ([], "--corpus/--dataset"),  # neither
        (["--split", "test"], "--split"),  # never train on the test qrels
        (["--layers", "0"], "--layers"),
        (["--negatives", "0"], "--negatives"),
        (["--max-length", "8"], "--max-length"),
        (["--style", "poem"], "--style"),
        (["--synthetic", "0", "--ict", "0"], "--synthetic/--ict/--titles"),
        (["--titles", "-1"], "--titles"),
        (["--limit", "0"], "--limit"),
        (["--fusion", "max"], "--fusion"),
        (["--max-minutes", "0"], "--max-minutes"),
        (["--patience", "0"], "--patience"),
        (["--eval-every", "0"], "--eval-every"),
        (["--hard-negatives", "above"], "--hard-negatives"),
    ],
)
def test_reranker_bad_options(tiny_train, tmp_path, monkeypatch, args, field):
    monkeypatch.setenv("LLM_TWIN_DATA_DIR", str(tmp_path / "data"))
    source = [] if args == [] else ["--dataset", str(tiny_train)]
    result = CliRunner().invoke(app, ["train", "reranker", *source, "--out", str(tmp_path / "out"), *args])
    assert result.exit_code == 2, result.output
    assert field in result.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "data").exists()


def test_reranker_without_torch_says_how_to_install_it(tiny_train, tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_TWIN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setitem(sys.modules, "torch", None)
    result = CliRunner().invoke(
        app, ["train", "reranker", "--dataset", str(tiny_train), "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 1
    assert "make install-train" in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "data").exists()  # failed before any generation
