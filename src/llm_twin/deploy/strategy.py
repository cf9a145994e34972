"""Deployment strategies: how a ``DeploymentPlan`` becomes running infrastructure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import boto3

from llm_twin.deploy.autoscaling import EndpointAutoscaler
from llm_twin.deploy.aws import aws_client
from llm_twin.deploy.plan import DeploymentPlan
from llm_twin.deploy.resource_manager import Action, EndpointSpec, Progress, ResourceManager


@dataclass(frozen=True)
class DeployResult:
    action: Action
    endpoint_name: str
    endpoint_config_name: str
    model_name: str


class DeploymentStrategy(Protocol):
    def deploy(self, plan: DeploymentPlan) -> DeployResult:
        """Make the deployed state match ``plan``; idempotent."""

    def undeploy(self, plan: DeploymentPlan) -> list[str]:
        """Remove everything ``deploy`` created; returns what was removed. Nothing there is fine."""


class SagemakerHuggingfaceStrategy:
    """One real-time SageMaker endpoint running the HuggingFace TGI container."""

    def __init__(self, resources: ResourceManager, autoscaler: EndpointAutoscaler) -> None:
        self._resources = resources
        self._autoscaler = autoscaler

    @classmethod
    def for_plan(
        cls,
        plan: DeploymentPlan,
        progress: Progress = lambda _m: None,
        session: boto3.session.Session | None = None,
    ) -> SagemakerHuggingfaceStrategy:
        """Strategy on real boto3 clients (AWS, or whatever ``AWS_ENDPOINT_URL`` points at)."""
        session = session or boto3.session.Session()
        resources = ResourceManager(
            aws_client("sagemaker", plan.region, session=session), timeout_s=plan.timeout_s, progress=progress
        )
        return cls(resources, EndpointAutoscaler(aws_client("application-autoscaling", plan.region, session=session)))

    @staticmethod
    def endpoint_spec(plan: DeploymentPlan) -> EndpointSpec:
        model_request = {
            "ExecutionRoleArn": plan.require_role(),
            "PrimaryContainer": {"Image": plan.image_uri, "Environment": dict(plan.environment)},
        }
        variant = {
            "VariantName": plan.variant_name,
            "ModelName": plan.model_name,
            "InstanceType": plan.instance_type,
            "InitialInstanceCount": plan.instance_count,
            "InitialVariantWeight": 1.0,
        }
        return EndpointSpec(
            endpoint_name=plan.endpoint_name,
            config_name=plan.endpoint_config_name,
            model_name=plan.model_name,
            model_request=model_request,
            production_variants=[variant],
        )

    def deploy(self, plan: DeploymentPlan) -> DeployResult:
        spec = self.endpoint_spec(plan)
        state = self._resources.settle(plan.endpoint_name)
        action = self._resources.decide(state, spec)
        if state.exists and (action is Action.UPDATE or plan.autoscaling is None):
            # UpdateEndpoint fails on a variant registered for autoscaling: deregister first,
            # re-register after. With autoscaling turned off this also removes an old policy.
            self._autoscaler.remove(plan.endpoint_name, plan.variant_name)
        self._resources.apply(action, spec, state)
        if plan.autoscaling is not None:
            self._autoscaler.apply(plan.endpoint_name, plan.variant_name, plan.autoscaling)
        return DeployResult(action, plan.endpoint_name, spec.config_name, spec.model_name)

    def undeploy(self, plan: DeploymentPlan) -> list[str]:
        removed = self._autoscaler.remove(plan.endpoint_name, plan.variant_name)
        removed += self._resources.delete(
            plan.endpoint_name, config_prefix=plan.endpoint_config_prefix, model_prefix=plan.model_prefix
        )
        return removed
