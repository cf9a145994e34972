"""A moto server (real HTTP on 127.0.0.1) for the deploy tests; boto3 reaches it via AWS_ENDPOINT_URL."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from deploy_support import HF_TOKEN, MOTO_INSTANCE_TYPE, REGION, ROLE_ARN, moto_post
from moto.server import ThreadedMotoServer

from llm_twin.settings import Settings, load_settings


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def boto_session():
    """One boto3 session for the run: clients on it share loaded service models (saves ~0.3s each)."""
    import boto3

    return boto3.session.Session()


@pytest.fixture
def aws(moto_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path) -> str:
    """Fake credentials, no config files, every AWS call to the (reset) moto server."""
    for name in (
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL_SAGEMAKER",
        "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME",
        "AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING",
        "HF_TOKEN",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "http_proxy",
        "https_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", HF_TOKEN)
    moto_post(moto_url, "/moto-api/reset")
    return moto_url


@pytest.fixture
def make_settings() -> Callable[..., Settings]:
    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "aws_region": REGION,
            "sagemaker_role_arn": ROLE_ARN,
            "sagemaker_instance_type": MOTO_INSTANCE_TYPE,
            "sagemaker_endpoint_name": "twin",
            "sagemaker_endpoint_config_name": "twin",
            "sagemaker_model_name": "twin",
            "autoscaling_enabled": False,
        }
        values.update(overrides)
        return load_settings(**values)

    return make


@pytest.fixture
def cli_app():
    """A Typer app with only the deploy commands (other areas' commands are not under test here)."""
    import typer

    from llm_twin.cli.deploy import register

    app = typer.Typer(pretty_exceptions_enable=False, add_completion=False)
    register(app, typer.Typer())
    return app
