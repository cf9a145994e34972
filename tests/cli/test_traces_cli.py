"""``llm-twin traces``: Phoenix's environment, the service's variables, install and start (without Phoenix)."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

from typer.testing import CliRunner

from llm_twin.cli import app
from llm_twin.cli.traces import PHOENIX_PACKAGE, install_commands, phoenix_environment


def test_print_env_points_the_service_at_the_viewer() -> None:
    result = CliRunner().invoke(app, ["traces", "--print-env", "--port", "7007"])
    assert result.exit_code == 0
    assert "export OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://127.0.0.1:7007/v1/traces" in result.stdout
    assert "export LLM_TWIN_TRACING=otlp" in result.stdout


def test_phoenix_runs_local_and_without_agent_features(tmp_path: Path) -> None:
    env = phoenix_environment(6006, 4317, tmp_path)
    assert env["PHOENIX_HOST"] == "127.0.0.1" and env["PHOENIX_PORT"] == "6006"
    assert env["PHOENIX_DISABLE_AGENT_ASSISTANT"] == "true"
    assert env["PHOENIX_AGENTS_DISABLE_WEB_ACCESS"] == "true"
    assert env["PHOENIX_AGENTS_DISABLE_BASH"] == "true"
    assert env["PHOENIX_ALLOW_EXTERNAL_RESOURCES"] == "false"
    assert env["PHOENIX_ENABLE_MCP_SERVER"] == "false"


def test_install_goes_into_its_own_venv(tmp_path: Path) -> None:
    commands = install_commands(tmp_path / ".venv-phoenix", python="python3")
    assert commands[0] == ["python3", "-m", "venv", str(tmp_path / ".venv-phoenix")]
    assert commands[-1][-1] == PHOENIX_PACKAGE and commands[-1][0].startswith(str(tmp_path / ".venv-phoenix"))


def test_missing_phoenix_without_install_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["traces", "--no-install", "--venv", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert "Phoenix is not installed" in result.stderr


def test_starts_phoenix_serve_with_its_environment(tmp_path: Path) -> None:
    """A stand-in ``phoenix`` executable records how it was started."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    record = tmp_path / "started.json"
    fake = venv / "bin" / "phoenix"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        f"json.dump({{'argv': sys.argv[1:], 'env': {{k: v for k, v in os.environ.items() if k.startswith('PHOENIX_')}}}},"
        f" open({str(record)!r}, 'w'))\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    result = CliRunner().invoke(
        app, ["traces", "--venv", str(venv), "--port", "7008", "--working-dir", str(tmp_path / "work")]
    )
    assert result.exit_code == 0, result.stderr
    started = json.loads(record.read_text())
    assert started["argv"] == ["serve"]
    assert started["env"]["PHOENIX_HOST"] == "127.0.0.1" and started["env"]["PHOENIX_PORT"] == "7008"
    assert started["env"]["PHOENIX_WORKING_DIR"] == str(tmp_path / "work")
    assert "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://127.0.0.1:7008/v1/traces" in result.stderr
