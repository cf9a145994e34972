"""Deploy / undeploy against a moto server over real HTTP (moto has no update_endpoint: see the stubbed tests)."""

from __future__ import annotations

import json

import pytest
from deploy_support import HF_TOKEN, REGION, moto_post
from typer.testing import CliRunner

from llm_twin.deploy.plan import build_plan
from llm_twin.deploy.resource_manager import Action
from llm_twin.deploy.strategy import SagemakerHuggingfaceStrategy
from llm_twin.llm.base import GenerationParams
from llm_twin.llm.sagemaker import SagemakerTGIClient


@pytest.fixture
def sm(aws, boto_session):
    return boto_session.client("sagemaker", region_name=REGION)


@pytest.fixture
def scaling(aws, boto_session):
    return boto_session.client("application-autoscaling", region_name=REGION)


@pytest.fixture
def strategy(aws, boto_session):
    """``SagemakerHuggingfaceStrategy.for_plan`` on the shared session (real boto3 over HTTP to moto)."""
    return lambda plan: SagemakerHuggingfaceStrategy.for_plan(plan, session=boto_session)


@pytest.fixture
def deploy(strategy):
    def run(settings):
        plan = build_plan(settings)
        return plan, strategy(plan).deploy(plan)

    return run


def _counts(sm) -> tuple[int, int, int]:
    return (
        len(sm.list_models()["Models"]),
        len(sm.list_endpoint_configs()["EndpointConfigs"]),
        len(sm.list_endpoints()["Endpoints"]),
    )


def test_deploy_twice_leaves_one_model_config_and_endpoint(sm, deploy, make_settings):
    settings = make_settings()
    plan, first = deploy(settings)
    _, second = deploy(settings)

    assert first.action is Action.CREATE
    assert second.action is Action.NONE
    assert _counts(sm) == (1, 1, 1)
    endpoint = sm.describe_endpoint(EndpointName="twin")
    assert endpoint["EndpointStatus"] == "InService"
    assert endpoint["EndpointConfigName"] == plan.endpoint_config_name
    variant = sm.describe_endpoint_config(EndpointConfigName=plan.endpoint_config_name)["ProductionVariants"][0]
    assert (variant["ModelName"], variant["InstanceType"], variant["InitialInstanceCount"]) == (
        plan.model_name,
        "ml.g4dn.xlarge",
        1,
    )
    model = sm.describe_model(ModelName=plan.model_name)
    assert model["ExecutionRoleArn"] == settings.sagemaker_role_arn
    assert model["PrimaryContainer"]["Image"].endswith(
        "/huggingface-pytorch-tgi-inference:2.3.0-tgi2.2.0-gpu-py310-cu121-ubuntu22.04"
    )
    env = model["PrimaryContainer"]["Environment"]
    assert env["HF_MODEL_ID"] == "mlabonne/TwinLlama-3.1-8B-DPO"
    assert env["HUGGING_FACE_HUB_TOKEN"] == HF_TOKEN
    assert {"SM_NUM_GPUS", "MAX_INPUT_LENGTH", "MAX_TOTAL_TOKENS", "MAX_BATCH_TOTAL_TOKENS"} <= env.keys()


def test_autoscaling_registered_then_removed_on_undeploy(scaling, deploy, strategy, make_settings):
    settings = make_settings(
        autoscaling_enabled=True,
        autoscaling_min_instances=1,
        autoscaling_max_instances=3,
        autoscaling_target_invocations=70,
        autoscaling_scale_in_cooldown_s=600,
        autoscaling_scale_out_cooldown_s=120,
    )
    plan, _ = deploy(settings)
    deploy(settings)  # re-applying is idempotent

    targets = scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert [(t["ResourceId"], t["ScalableDimension"], t["MinCapacity"], t["MaxCapacity"]) for t in targets] == [
        ("endpoint/twin/variant/AllTraffic", "sagemaker:variant:DesiredInstanceCount", 1, 3)
    ]
    policies = scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    assert len(policies) == 1
    config = policies[0]["TargetTrackingScalingPolicyConfiguration"]
    assert policies[0]["PolicyType"] == "TargetTrackingScaling"
    assert config["TargetValue"] == 70
    assert config["PredefinedMetricSpecification"]["PredefinedMetricType"] == "SageMakerVariantInvocationsPerInstance"
    assert (config["ScaleInCooldown"], config["ScaleOutCooldown"]) == (600, 120)

    removed = strategy(plan).undeploy(plan)

    assert "scaling policy twin-invocations-per-instance" in removed
    assert scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []
    assert scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"] == []


def test_turning_autoscaling_off_removes_it(scaling, deploy, make_settings):
    deploy(make_settings(autoscaling_enabled=True))
    _, result = deploy(make_settings(autoscaling_enabled=False))

    assert result.action is Action.NONE
    assert scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []


def test_undeploy_leaves_nothing_and_spares_other_resources(sm, deploy, strategy, make_settings):
    plan, _ = deploy(make_settings())
    sm.create_model(
        ModelName="someone-elses-model", ExecutionRoleArn=plan.role_arn, PrimaryContainer={"Image": plan.image_uri}
    )

    removed = strategy(plan).undeploy(plan)

    assert removed == [
        f"endpoint {plan.endpoint_name}",
        f"endpoint config {plan.endpoint_config_name}",
        f"model {plan.model_name}",
    ]
    assert [m["ModelName"] for m in sm.list_models()["Models"]] == ["someone-elses-model"]
    assert sm.list_endpoint_configs()["EndpointConfigs"] == []
    assert sm.list_endpoints()["Endpoints"] == []


def test_undeploy_of_nothing_succeeds(strategy, make_settings):
    plan = build_plan(make_settings())
    assert strategy(plan).undeploy(plan) == []


def test_undeploy_cleans_up_after_a_half_finished_deploy(sm, deploy, strategy, make_settings):
    plan, _ = deploy(make_settings())
    sm.delete_endpoint(EndpointName="twin")  # e.g. someone deleted it in the console

    removed = strategy(plan).undeploy(plan)

    assert removed == [f"endpoint config {plan.endpoint_config_name}", f"model {plan.model_name}"]
    assert _counts(sm) == (0, 0, 0)


def test_cli_deploy_and_undeploy(sm, monkeypatch, cli_app):
    for key, value in {
        "LLM_TWIN_AWS_REGION": REGION,
        "LLM_TWIN_SAGEMAKER_ROLE_ARN": "arn:aws:iam::123456789012:role/x",
        "LLM_TWIN_SAGEMAKER_INSTANCE_TYPE": "ml.g4dn.xlarge",
    }.items():
        monkeypatch.setenv(key, value)
    runner = CliRunner()

    deployed = runner.invoke(cli_app, ["deploy"])
    again = runner.invoke(cli_app, ["deploy"])
    undeployed = runner.invoke(cli_app, ["undeploy"])
    nothing = runner.invoke(cli_app, ["undeploy"])

    assert deployed.exit_code == 0, deployed.output
    assert "created endpoint twin" in deployed.stdout
    assert again.exit_code == 0 and "is up to date" in again.stdout
    assert undeployed.exit_code == 0 and "removed endpoint twin" in undeployed.stdout
    assert nothing.exit_code == 0 and "nothing to remove" in nothing.stdout
    assert HF_TOKEN not in deployed.output + again.output + undeployed.output
    assert _counts(sm) == (0, 0, 0)


def test_sagemaker_client_invokes_the_deployed_endpoint(aws, deploy, make_settings):
    settings = make_settings()
    deploy(settings)
    canned = "I write about LLM twins and RAG pipelines."
    moto_post(
        aws,
        "/moto-api/static/sagemaker/endpoint-results",
        {
            "region": REGION,
            "results": [{"Body": json.dumps([{"generated_text": canned}]), "ContentType": "application/json"}],
        },
    )
    client = SagemakerTGIClient(settings)
    client.warm_up()
    sent: list[dict] = []
    client._runtime().meta.events.register(
        "provide-client-params.sagemaker-runtime.InvokeEndpoint", lambda params, **_: sent.append(dict(params))
    )

    completion = client.complete(
        [{"role": "user", "content": "What do you write about?"}],
        GenerationParams(max_new_tokens=64, temperature=0.7, top_p=0.95),
    )

    assert completion.text == canned
    assert sent[0]["EndpointName"] == "twin"
    payload = json.loads(sent[0]["Body"])
    assert payload["inputs"].endswith("about?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
    assert payload["parameters"] == {
        "max_new_tokens": 64,
        "top_p": 0.95,
        "temperature": 0.7,
        "return_full_text": False,
        "repetition_penalty": 1.1,
    }
