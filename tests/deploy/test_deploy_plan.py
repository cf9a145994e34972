"""The plan derived from settings, and the offline parts of the CLI (dry run, configuration errors)."""

from __future__ import annotations

import boto3
import pytest
from typer.testing import CliRunner

from llm_twin.deploy.errors import DeployConfigError
from llm_twin.deploy.images import tgi_image_uri
from llm_twin.deploy.plan import build_plan, is_versioned_name, mask_secret
from llm_twin.settings import load_settings


def test_pinned_tgi_image_per_region():
    assert tgi_image_uri("eu-central-1") == (
        "763104351884.dkr.ecr.eu-central-1.amazonaws.com/"
        "huggingface-pytorch-tgi-inference:2.3.0-tgi2.2.0-gpu-py310-cu121-ubuntu22.04"
    )
    assert tgi_image_uri("eu-south-1").startswith("692866216735.dkr.ecr.eu-south-1.amazonaws.com/")
    assert tgi_image_uri("cn-north-1").startswith("727897471807.dkr.ecr.cn-north-1.amazonaws.com.cn/")
    with pytest.raises(DeployConfigError, match="LLM_TWIN_AWS_REGION"):
        tgi_image_uri("mars-east-1")


def test_names_change_only_with_what_they_describe(make_settings):
    base = build_plan(make_settings())
    bigger = build_plan(make_settings(sagemaker_instance_type="ml.g4dn.2xlarge"))
    other_model = build_plan(make_settings(hf_model_id="someone/other-twin"))

    assert build_plan(make_settings()).endpoint_config_name == base.endpoint_config_name
    assert (bigger.model_name, bigger.endpoint_config_name != base.endpoint_config_name) == (base.model_name, True)
    assert other_model.model_name != base.model_name
    assert other_model.endpoint_config_name != base.endpoint_config_name
    assert is_versioned_name(base.model_name, "twin")
    assert not is_versioned_name("twin", "twin") and not is_versioned_name("twin-prod-model", "twin")


def test_container_environment_and_masking(make_settings, monkeypatch):
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", "hf_test_secret")
    plan = build_plan(make_settings(hf_model_quantize="bitsandbytes", max_total_tokens=8192))

    assert plan.environment["HF_MODEL_QUANTIZE"] == "bitsandbytes"
    assert plan.environment["MAX_TOTAL_TOKENS"] == "8192"
    assert plan.masked_environment()["HUGGING_FACE_HUB_TOKEN"] == "hf_***"
    assert "hf_test_secret" not in repr(plan)
    assert mask_secret("not-an-hf-token") == "***"


def test_autoscaling_bounds_are_checked(make_settings):
    with pytest.raises(DeployConfigError, match="LLM_TWIN_AUTOSCALING_MIN_INSTANCES"):
        build_plan(make_settings(autoscaling_enabled=True, autoscaling_min_instances=3, autoscaling_max_instances=2))


def test_dry_run_prints_plan_offline_with_secrets_masked(monkeypatch, cli_app):
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", "hf_very_secret_value")
    monkeypatch.setenv("LLM_TWIN_AUTOSCALING_ENABLED", "true")
    monkeypatch.delenv("LLM_TWIN_SAGEMAKER_ROLE_ARN", raising=False)

    def no_aws(*_args, **_kwargs):
        raise AssertionError("dry run must not create AWS clients")

    monkeypatch.setattr(boto3.session.Session, "client", no_aws)
    monkeypatch.setattr(boto3, "client", no_aws)

    result = CliRunner().invoke(cli_app, ["deploy", "--dry-run"], env={"LLM_TWIN_AWS_REGION": "eu-west-1"})

    assert result.exit_code == 0, result.output
    plan = build_plan(load_settings(aws_region="eu-west-1", autoscaling_enabled=True))
    for expected in (
        plan.model_name,
        plan.endpoint_config_name,
        "endpoint:        twin",
        "ml.g5.2xlarge",
        "instance count:  1",
        tgi_image_uri("eu-west-1"),
        "HF_MODEL_ID=mlabonne/TwinLlama-3.1-8B-DPO",
        "HUGGING_FACE_HUB_TOKEN=hf_***",
        "LLM_TWIN_SAGEMAKER_ROLE_ARN is required",
        "autoscaling:     1..2 instances",
    ):
        assert expected in result.stdout
    assert "very_secret" not in result.output


def test_deploy_without_role_is_a_clear_error(monkeypatch, cli_app):
    monkeypatch.delenv("LLM_TWIN_SAGEMAKER_ROLE_ARN", raising=False)
    monkeypatch.setattr(boto3.session.Session, "client", lambda *a, **k: pytest.fail("no AWS call expected"))

    result = CliRunner().invoke(cli_app, ["deploy"])

    assert result.exit_code == 2
    assert result.stderr.startswith("error: LLM_TWIN_SAGEMAKER_ROLE_ARN is not set")
    assert "Traceback" not in result.output


def test_bad_setting_names_the_variable(cli_app):
    result = CliRunner().invoke(cli_app, ["undeploy"], env={"LLM_TWIN_SAGEMAKER_INSTANCE_COUNT": "0"})

    assert result.exit_code == 2
    assert "LLM_TWIN_SAGEMAKER_INSTANCE_COUNT" in result.stderr
