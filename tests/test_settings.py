import pytest
from typer.testing import CliRunner

from llm_twin.cli import app
from llm_twin.settings import SettingsError, load_settings


def test_invalid_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("LLM_TWIN_K", "zero")
    with pytest.raises(SettingsError, match="LLM_TWIN_K"):
        load_settings()


def test_out_of_range_names_the_variable():
    with pytest.raises(SettingsError, match="LLM_TWIN_EXPAND_MAX"):
        load_settings(expand_max=99)


def test_blank_url_means_unset(monkeypatch):
    monkeypatch.setenv("LLM_TWIN_QDRANT_URL", " ")
    assert load_settings().qdrant_url is None


def test_cli_reports_bad_settings_without_traceback(monkeypatch, tmp_path):
    monkeypatch.setenv("LLM_TWIN_CHUNK_TOKENS", "-3")
    result = CliRunner().invoke(app, ["ingest", str(tmp_path / "x.jsonl")])
    assert result.exit_code == 2
    assert "LLM_TWIN_CHUNK_TOKENS" in result.stderr and "Traceback" not in result.stderr


def test_cross_field_rules_name_both_variables():
    with pytest.raises(
        SettingsError, match="LLM_TWIN_CHUNK_OVERLAP_TOKENS must be less than half of LLM_TWIN_CHUNK_TOKENS"
    ):
        load_settings(chunk_overlap_tokens=200)
    with pytest.raises(SettingsError, match="LLM_TWIN_EXPAND_TO_N must not exceed LLM_TWIN_EXPAND_MAX"):
        load_settings(expand_to_n=4, expand_max=3)
