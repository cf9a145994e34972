"""`llm-twin ask` and `llm-twin serve`: output formats, and one-line errors with no traceback."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llm_twin.cli import app

runner = CliRunner()


def small_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The same small configuration as ``conftest.slow_settings``, as environment variables."""
    env = {
        "LLM_TWIN_DATA_DIR": str(data_dir),
        "LLM_TWIN_LLM_MODEL": "smollm2-135m-instruct",
        "LLM_TWIN_LLM_N_CTX": "2048",
        "LLM_TWIN_HELPER_LLM_BACKEND": "none",
        "LLM_TWIN_RERANK_BACKEND": "none",
        "LLM_TWIN_EXPAND_TO_N": "1",
        "LLM_TWIN_K": "3",
        "LLM_TWIN_MAX_NEW_TOKENS": "12",
        "LLM_TWIN_TEMPERATURE": "0",
    }
    env.update(extra)
    return env


def assert_one_line_error(result, code: int, *words: str) -> None:
    assert result.exit_code == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for word in words:
        assert word in lines[0]


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["ask", ""], "query"),
        (["ask", "   "], "query"),
        (["ask", "x" * 2001], "query"),
        (["ask", "ok", "--k", "0"], "k"),
        (["ask", "ok", "--expand-to-n", "99"], "expand_to_n"),
    ],
)
def test_ask_rejects_invalid_input_in_one_line(tmp_path: Path, args: list[str], field: str) -> None:
    assert_one_line_error(runner.invoke(app, args, env=small_env(tmp_path)), 2, field)


def test_bad_configuration_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    result = runner.invoke(app, ["ask", "q"], env=small_env(tmp_path, LLM_TWIN_TEMPERATURE="hot"))
    assert_one_line_error(result, 2, "LLM_TWIN_TEMPERATURE")


def test_serve_fails_cleanly_when_the_trace_exporter_is_missing(tmp_path: Path) -> None:
    pytest.importorskip("opentelemetry.sdk")
    try:
        import opentelemetry.exporter.otlp.proto.http  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("the OTLP exporter is installed here")
    result = runner.invoke(app, ["serve", "--port", "8999"], env=small_env(tmp_path, LLM_TWIN_TRACING="otlp"))
    assert_one_line_error(result, 2, "opentelemetry-exporter-otlp")


def test_commands_are_registered() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "ask" in result.stdout and "serve" in result.stdout


@pytest.mark.slow
def test_ask_with_a_missing_store_is_one_line_exit_1(tmp_path: Path) -> None:
    result = runner.invoke(app, ["ask", "What is a PEP?"], env=small_env(tmp_path / "empty"))
    assert_one_line_error(result, 1)


@pytest.mark.slow
def test_ask_prints_answer_and_numbered_sources(demo_data_dir: Path) -> None:
    result = runner.invoke(
        app, ["ask", "What did Guido van Rossum write about pattern matching?"], env=small_env(demo_data_dir)
    )
    assert result.exit_code == 0, result.stderr
    answer, _, sources = result.stdout.partition("\nSources:\n")
    assert answer.strip()
    assert "  [1] " in sources and "Guido van Rossum" in sources
    assert "model smollm2-135m-instruct" in result.stderr


@pytest.mark.slow
def test_ask_json_prints_the_api_response_object(demo_data_dir: Path) -> None:
    result = runner.invoke(
        app, ["ask", "What did Guido van Rossum write about pattern matching?", "--json"], env=small_env(demo_data_dir)
    )
    assert result.exit_code == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["answer"].strip() and body["sources"] and body["rerank"] == "none"
    assert body["author"]["full_name"] == "Guido van Rossum"
    assert all("Guido van Rossum" in s["authors"] for s in body["sources"])


@pytest.mark.slow
def test_ask_stream_json_prints_events_in_order(demo_data_dir: Path) -> None:
    result = runner.invoke(app, ["ask", "What is a PEP?", "--stream", "--json"], env=small_env(demo_data_dir))
    assert result.exit_code == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "sources" and kinds[-1] == "done" and set(kinds[1:-1]) == {"token"} and len(kinds) > 2
    assert events[-1]["data"]["answer"] == "".join(e["data"]["text"] for e in events[1:-1]).strip()


# --- ask --url: the same output through a running server (fakes behind real uvicorn) ------------------


def test_ask_url_prints_answer_and_sources(live_server, tmp_path: Path) -> None:
    url, _ = live_server
    result = runner.invoke(app, ["ask", "pattern matching", "--url", url], env=small_env(tmp_path))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("Pattern matching was proposed [1].")
    assert "  [1] PEP 1 — Guido van Rossum" in result.stdout


def test_ask_url_stream_json_relays_the_events(live_server, tmp_path: Path) -> None:
    url, _ = live_server
    result = runner.invoke(app, ["ask", "q", "--url", url, "--stream", "--json"], env=small_env(tmp_path))
    assert result.exit_code == 0, result.stderr
    kinds = [json.loads(line)["event"] for line in result.stdout.splitlines()]
    assert kinds == ["sources", "token", "token", "token", "done"]


def test_ask_url_stream_prints_tokens_then_sources(live_server, tmp_path: Path) -> None:
    url, _ = live_server
    result = runner.invoke(app, ["ask", "q", "--url", url, "--stream"], env=small_env(tmp_path))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("Pattern matching was proposed [1].\n\nSources:\n")


def test_ask_url_unreachable_server_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = runner.invoke(app, ["ask", "q", "--url", f"http://127.0.0.1:{port}"], env=small_env(tmp_path))
    assert_one_line_error(result, 1, "cannot reach")


def test_ask_url_maps_422_to_exit_2(live_server, fake_retrieval, tmp_path: Path) -> None:
    from llm_twin.errors import InvalidInputError

    url, _ = live_server
    fake_retrieval.error = InvalidInputError("author", "no author named 'X'")
    result = runner.invoke(app, ["ask", "q", "--author", "X", "--url", url], env=small_env(tmp_path))
    assert_one_line_error(result, 2, "author")
