"""Application Auto Scaling for the endpoint variant: a scalable target on its instance count and
a target-tracking policy on invocations per instance."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from llm_twin.deploy.aws import is_not_found
from llm_twin.deploy.plan import AutoscalingSpec

NAMESPACE = "sagemaker"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
METRIC = "SageMakerVariantInvocationsPerInstance"


class EndpointAutoscaler:
    """Registers and removes autoscaling for one endpoint variant (``application-autoscaling`` client)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    @staticmethod
    def resource_id(endpoint_name: str, variant_name: str) -> str:
        return f"endpoint/{endpoint_name}/variant/{variant_name}"

    @staticmethod
    def policy_name(endpoint_name: str) -> str:
        return f"{endpoint_name}-invocations-per-instance"

    def apply(self, endpoint_name: str, variant_name: str, spec: AutoscalingSpec) -> None:
        """Idempotent: both calls overwrite what exists under the same ids."""
        resource_id = self.resource_id(endpoint_name, variant_name)
        self._client.register_scalable_target(
            ServiceNamespace=NAMESPACE,
            ResourceId=resource_id,
            ScalableDimension=DIMENSION,
            MinCapacity=spec.min_instances,
            MaxCapacity=spec.max_instances,
        )
        self._client.put_scaling_policy(
            PolicyName=self.policy_name(endpoint_name),
            ServiceNamespace=NAMESPACE,
            ResourceId=resource_id,
            ScalableDimension=DIMENSION,
            PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration={
                "TargetValue": spec.target_invocations,
                "PredefinedMetricSpecification": {"PredefinedMetricType": METRIC},
                "ScaleInCooldown": spec.scale_in_cooldown_s,
                "ScaleOutCooldown": spec.scale_out_cooldown_s,
            },
        )

    def remove(self, endpoint_name: str, variant_name: str) -> list[str]:
        """Delete the policy, then the target; pieces already gone are fine. Returns what was removed."""
        resource_id = self.resource_id(endpoint_name, variant_name)
        removed = []
        try:
            self._client.delete_scaling_policy(
                PolicyName=self.policy_name(endpoint_name),
                ServiceNamespace=NAMESPACE,
                ResourceId=resource_id,
                ScalableDimension=DIMENSION,
            )
            removed.append(f"scaling policy {self.policy_name(endpoint_name)}")
        except ClientError as error:
            if not is_not_found(error):
                raise
        try:
            self._client.deregister_scalable_target(
                ServiceNamespace=NAMESPACE, ResourceId=resource_id, ScalableDimension=DIMENSION
            )
            removed.append(f"scalable target {resource_id}")
        except ClientError as error:
            if not is_not_found(error):
                raise
        return removed
