"""Paths moto cannot serve (update_endpoint, Failed endpoints, slow endpoints), checked with botocore's Stubber."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from botocore.stub import ANY, Stubber
from deploy_support import REGION
from typer.testing import CliRunner

from llm_twin.cli import deploy as commands
from llm_twin.deploy.autoscaling import DIMENSION, EndpointAutoscaler
from llm_twin.deploy.errors import DeployTimeoutError, EndpointFailedError
from llm_twin.deploy.plan import build_plan
from llm_twin.deploy.resource_manager import Action, ResourceManager
from llm_twin.deploy.strategy import SagemakerHuggingfaceStrategy

NOW = datetime(2025, 1, 1, tzinfo=UTC)
ENDPOINT_ARN = "arn:aws:sagemaker:us-east-1:123456789012:endpoint/twin"
CONFIG_ARN = "arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/twin"
MODEL_ARN = "arn:aws:sagemaker:us-east-1:123456789012:model/twin"
POLICY_ARN = "arn:aws:autoscaling:us-east-1:123456789012:scalingPolicy:twin"


@pytest.fixture
def clients(aws, boto_session):
    """Stubbed clients (fake credentials from ``aws``): Stubber answers every call, nothing is sent."""
    sm = boto_session.client("sagemaker", region_name=REGION, endpoint_url="http://127.0.0.1:9")
    scaling = boto_session.client("application-autoscaling", region_name=REGION, endpoint_url="http://127.0.0.1:9")
    with Stubber(sm) as sm_stub, Stubber(scaling) as scaling_stub:
        yield sm, sm_stub, scaling, scaling_stub
        sm_stub.assert_no_pending_responses()
        scaling_stub.assert_no_pending_responses()


def _endpoint(status: str, config: str, reason: str | None = None) -> dict:
    response = {
        "EndpointName": "twin",
        "EndpointArn": ENDPOINT_ARN,
        "EndpointConfigName": config,
        "EndpointStatus": status,
        "CreationTime": NOW,
        "LastModifiedTime": NOW,
    }
    if reason:
        response["FailureReason"] = reason
    return response


def _config(name: str, model: str, instance_type: str) -> dict:
    return {
        "EndpointConfigName": name,
        "EndpointConfigArn": f"arn:aws:sagemaker:us-east-1:1:endpoint-config/{name}",
        "CreationTime": NOW,
        "ProductionVariants": [
            {"VariantName": "AllTraffic", "ModelName": model, "InstanceType": instance_type, "InitialInstanceCount": 1}
        ],
    }


def _model(name: str) -> dict:
    return {
        "ModelName": name,
        "ModelArn": f"arn:aws:sagemaker:us-east-1:1:model/{name}",
        "CreationTime": NOW,
        "ExecutionRoleArn": "arn:aws:iam::123456789012:role/x",
    }


def _strategy(sm, scaling, **kwargs) -> SagemakerHuggingfaceStrategy:
    resources = ResourceManager(sm, poll_interval_s=0.0, sleep=lambda _s: None, **kwargs)
    return SagemakerHuggingfaceStrategy(resources, EndpointAutoscaler(scaling))


def test_changed_instance_type_takes_the_update_path(clients, make_settings):
    sm, sm_stub, scaling, scaling_stub = clients
    old = build_plan(make_settings(sagemaker_instance_type="ml.g4dn.xlarge"))
    new = build_plan(make_settings(sagemaker_instance_type="ml.g4dn.2xlarge"))
    assert new.model_name == old.model_name  # same container: the model is reused
    assert new.endpoint_config_name != old.endpoint_config_name
    not_found = {"service_error_code": "ValidationException", "service_message": "Could not find it."}
    gone = {"service_error_code": "ObjectNotFoundException", "service_message": "No such thing."}

    # Look at what exists: the endpoint on the old config.
    old_config = _config(old.endpoint_config_name, old.model_name, "ml.g4dn.xlarge")
    old_endpoint = _endpoint("InService", old.endpoint_config_name)
    sm_stub.add_response("describe_endpoint", old_endpoint, {"EndpointName": "twin"})
    sm_stub.add_response("describe_endpoint_config", old_config, {"EndpointConfigName": old.endpoint_config_name})
    # Autoscaling must be off the variant before UpdateEndpoint (none registered here).
    scaling_stub.add_client_error("delete_scaling_policy", **gone)
    scaling_stub.add_client_error("deregister_scalable_target", **gone)
    # Model exists already; the new config does not: create it, then update_endpoint.
    sm_stub.add_response("describe_model", _model(new.model_name), {"ModelName": new.model_name})
    sm_stub.add_client_error(
        "describe_endpoint_config", **not_found, expected_params={"EndpointConfigName": new.endpoint_config_name}
    )
    sm_stub.add_response(
        "create_endpoint_config",
        {"EndpointConfigArn": CONFIG_ARN},
        {
            "EndpointConfigName": new.endpoint_config_name,
            "ProductionVariants": [
                {
                    "VariantName": "AllTraffic",
                    "ModelName": new.model_name,
                    "InstanceType": "ml.g4dn.2xlarge",
                    "InitialInstanceCount": 1,
                    "InitialVariantWeight": 1.0,
                }
            ],
        },
    )
    sm_stub.add_response(
        "update_endpoint",
        {"EndpointArn": ENDPOINT_ARN},
        {"EndpointName": "twin", "EndpointConfigName": new.endpoint_config_name},
    )
    # Wait for InService, then drop the replaced config (the model is still in use).
    for status in ("Updating", "InService"):
        sm_stub.add_response("describe_endpoint", _endpoint(status, new.endpoint_config_name), {"EndpointName": "twin"})
    sm_stub.add_response("delete_endpoint_config", {}, {"EndpointConfigName": old.endpoint_config_name})

    result = _strategy(sm, scaling).deploy(new)

    assert result.action is Action.UPDATE
    assert result.endpoint_config_name == new.endpoint_config_name


def test_update_with_autoscaling_deregisters_first_and_registers_after(clients, make_settings):
    sm, sm_stub, scaling, scaling_stub = clients
    old = build_plan(make_settings(sagemaker_instance_type="ml.g4dn.xlarge", autoscaling_enabled=True))
    new = build_plan(make_settings(sagemaker_instance_type="ml.g4dn.2xlarge", autoscaling_enabled=True))
    resource_id = "endpoint/twin/variant/AllTraffic"
    calls: list[str] = []
    for client in (sm, scaling):
        client.meta.events.register_first("before-call.*.*", lambda model, **_: calls.append(model.name))

    sm_stub.add_response("describe_endpoint", _endpoint("InService", old.endpoint_config_name))
    sm_stub.add_response(
        "describe_endpoint_config", _config(old.endpoint_config_name, old.model_name, "ml.g4dn.xlarge")
    )
    scaling_stub.add_response("delete_scaling_policy", {})
    scaling_stub.add_response(
        "deregister_scalable_target",
        {},
        {"ServiceNamespace": "sagemaker", "ResourceId": resource_id, "ScalableDimension": DIMENSION},
    )
    sm_stub.add_response("describe_model", _model(new.model_name))
    sm_stub.add_client_error("describe_endpoint_config", "ValidationException", "Could not find endpoint config")
    sm_stub.add_response("create_endpoint_config", {"EndpointConfigArn": CONFIG_ARN})
    sm_stub.add_response("update_endpoint", {"EndpointArn": ENDPOINT_ARN})
    sm_stub.add_response("describe_endpoint", _endpoint("InService", new.endpoint_config_name))
    sm_stub.add_response("delete_endpoint_config", {})
    scaling_stub.add_response(
        "register_scalable_target",
        {},
        {
            "ServiceNamespace": "sagemaker",
            "ResourceId": resource_id,
            "ScalableDimension": DIMENSION,
            "MinCapacity": 1,
            "MaxCapacity": 2,
        },
    )
    scaling_stub.add_response(
        "put_scaling_policy",
        {"PolicyARN": POLICY_ARN, "Alarms": []},
        {
            "PolicyName": "twin-invocations-per-instance",
            "ServiceNamespace": "sagemaker",
            "ResourceId": resource_id,
            "ScalableDimension": DIMENSION,
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": ANY,
        },
    )

    assert _strategy(sm, scaling).deploy(new).action is Action.UPDATE
    order = [calls.index(op) for op in ("DeregisterScalableTarget", "UpdateEndpoint", "RegisterScalableTarget")]
    assert order == sorted(order)


def test_failed_endpoint_reports_failure_reason(clients, make_settings):
    sm, sm_stub, scaling, _ = clients
    plan = build_plan(make_settings())
    reason = "Image size 42GB is greater than supported size 30GB"
    sm_stub.add_client_error("describe_endpoint", "ValidationException", "Could not find endpoint")
    sm_stub.add_client_error("describe_model", "ValidationException", "Could not find model")
    sm_stub.add_response(
        "create_model",
        {"ModelArn": MODEL_ARN},
        {
            "ModelName": plan.model_name,
            "ExecutionRoleArn": plan.role_arn,
            "PrimaryContainer": {"Image": plan.image_uri, "Environment": dict(plan.environment)},
        },
    )
    sm_stub.add_client_error("describe_endpoint_config", "ValidationException", "Could not find endpoint config")
    sm_stub.add_response("create_endpoint_config", {"EndpointConfigArn": CONFIG_ARN})
    sm_stub.add_response(
        "create_endpoint",
        {"EndpointArn": ENDPOINT_ARN},
        {"EndpointName": "twin", "EndpointConfigName": plan.endpoint_config_name},
    )
    sm_stub.add_response("describe_endpoint", _endpoint("Creating", plan.endpoint_config_name))
    sm_stub.add_response("describe_endpoint", _endpoint("Failed", plan.endpoint_config_name, reason))

    with pytest.raises(EndpointFailedError, match="greater than supported size"):
        _strategy(sm, scaling).deploy(plan)


def test_failed_endpoint_exits_non_zero_with_reason(clients, make_settings, monkeypatch, cli_app):
    sm, sm_stub, scaling, _ = clients
    monkeypatch.setenv("LLM_TWIN_AWS_REGION", REGION)
    monkeypatch.setenv("LLM_TWIN_SAGEMAKER_ROLE_ARN", "arn:aws:iam::123456789012:role/x")
    sm_stub.add_response("describe_endpoint", _endpoint("Failed", "twin-old", "CUDA out of memory"))
    sm_stub.add_response("describe_endpoint_config", _config("twin-old", "twin-model", "ml.g4dn.xlarge"))
    monkeypatch.setattr(commands, "build_strategy", lambda plan: _strategy(sm, scaling))

    result = CliRunner().invoke(cli_app, ["deploy"])

    assert result.exit_code == 1
    assert "CUDA out of memory" in result.stderr
    assert "Traceback" not in result.output


def test_wait_times_out(clients):
    sm, sm_stub, _, _ = clients
    clock = iter([0.0, 0.0, 30.0, 61.0])
    for _ in range(3):
        sm_stub.add_response("describe_endpoint", _endpoint("Creating", "twin-x"))
    progress: list[str] = []
    manager = ResourceManager(
        sm, timeout_s=60, poll_interval_s=30, sleep=lambda _s: None, clock=lambda: next(clock), progress=progress.append
    )

    with pytest.raises(DeployTimeoutError, match="still Creating after 60s"):
        manager.wait_in_service("twin")
    assert progress == ["endpoint 'twin': Creating (0s elapsed)", "endpoint 'twin': Creating (30s elapsed)"]


def test_rolled_back_update_is_a_failure(clients):
    sm, sm_stub, _, _ = clients
    sm_stub.add_response("describe_endpoint", _endpoint("InService", "twin-old", "Health check failed"))
    manager = ResourceManager(sm, sleep=lambda _s: None)

    with pytest.raises(EndpointFailedError, match="Health check failed"):
        manager.wait_in_service("twin", expected_config="twin-new")
