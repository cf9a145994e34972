"""What a deploy will create, derived from settings alone (no AWS calls): the dry-run shows this.

Model and endpoint config names carry a short content fingerprint (``twin-1a2b3c4d``): SageMaker
models and endpoint configs are immutable, so a changed setting needs new ones, and equal names
mean equal content, which is what makes a repeated deploy a no-op.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from llm_twin.deploy.errors import DeployConfigError
from llm_twin.deploy.images import tgi_image_uri

if TYPE_CHECKING:
    from llm_twin.settings import Settings

VARIANT_NAME = "AllTraffic"
SECRET_ENV_KEYS = frozenset({"HUGGING_FACE_HUB_TOKEN", "HF_TOKEN"})
_MAX_NAME = 63  # SageMaker resource names: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}
_FINGERPRINT_LEN = 8


@dataclass(frozen=True)
class AutoscalingSpec:
    min_instances: int
    max_instances: int
    target_invocations: float  # SageMakerVariantInvocationsPerInstance, per minute
    scale_in_cooldown_s: int
    scale_out_cooldown_s: int


@dataclass(frozen=True)
class DeploymentPlan:
    region: str
    endpoint_name: str
    endpoint_config_prefix: str
    model_prefix: str
    image_uri: str
    role_arn: str | None
    instance_type: str
    instance_count: int
    # Holds the HF token: kept out of repr so it never lands in logs or tracebacks.
    environment: Mapping[str, str] = field(repr=False)
    autoscaling: AutoscalingSpec | None = None
    timeout_s: float = 1800.0
    variant_name: str = VARIANT_NAME

    @property
    def model_name(self) -> str:
        content = {"image": self.image_uri, "environment": dict(self.environment), "role": self.role_arn or ""}
        return _versioned(self.model_prefix, content)

    @property
    def endpoint_config_name(self) -> str:
        content = {
            "model": self.model_name,
            "variant": self.variant_name,
            "instance_type": self.instance_type,
            "instance_count": self.instance_count,
        }
        return _versioned(self.endpoint_config_prefix, content)

    def require_role(self) -> str:
        if not self.role_arn:
            raise DeployConfigError(
                "LLM_TWIN_SAGEMAKER_ROLE_ARN is not set: SageMaker needs an execution role ARN "
                "(arn:aws:iam::<account>:role/<name>, trusted by sagemaker.amazonaws.com)"
            )
        return self.role_arn

    def masked_environment(self) -> dict[str, str]:
        return {key: mask_secret(value) if key in SECRET_ENV_KEYS else value for key, value in self.environment.items()}


def mask_secret(value: str) -> str:
    """``hf_abc123`` -> ``hf_***``: shows which kind of token is set, never the token."""
    return "hf_***" if value.startswith("hf_") else "***"


def container_environment(settings: Settings) -> dict[str, str]:
    """TGI launcher variables (all strings, as SageMaker requires); optional ones only when set."""
    env = {
        "HF_MODEL_ID": settings.hf_model_id,
        "SM_NUM_GPUS": str(settings.sm_num_gpus),
        "MAX_INPUT_LENGTH": str(settings.max_input_length),
        "MAX_TOTAL_TOKENS": str(settings.max_total_tokens),
        "MAX_BATCH_TOTAL_TOKENS": str(settings.max_batch_total_tokens),
    }
    if settings.hf_model_quantize:
        env["HF_MODEL_QUANTIZE"] = settings.hf_model_quantize
    if settings.hugging_face_hub_token is not None:
        env["HUGGING_FACE_HUB_TOKEN"] = settings.hugging_face_hub_token.get_secret_value()
    return env


def build_plan(settings: Settings) -> DeploymentPlan:
    """The plan for ``settings``; raises ``DeployConfigError`` naming the variable at fault."""
    if settings.max_input_length >= settings.max_total_tokens:
        raise DeployConfigError("LLM_TWIN_MAX_INPUT_LENGTH must be smaller than LLM_TWIN_MAX_TOTAL_TOKENS")
    autoscaling = None
    if settings.autoscaling_enabled:
        if settings.autoscaling_min_instances > settings.autoscaling_max_instances:
            raise DeployConfigError(
                "LLM_TWIN_AUTOSCALING_MIN_INSTANCES must not exceed LLM_TWIN_AUTOSCALING_MAX_INSTANCES"
            )
        autoscaling = AutoscalingSpec(
            min_instances=settings.autoscaling_min_instances,
            max_instances=settings.autoscaling_max_instances,
            target_invocations=settings.autoscaling_target_invocations,
            scale_in_cooldown_s=settings.autoscaling_scale_in_cooldown_s,
            scale_out_cooldown_s=settings.autoscaling_scale_out_cooldown_s,
        )
    return DeploymentPlan(
        region=settings.aws_region,
        endpoint_name=settings.sagemaker_endpoint_name,
        endpoint_config_prefix=settings.sagemaker_endpoint_config_name,
        model_prefix=settings.sagemaker_model_name,
        image_uri=tgi_image_uri(settings.aws_region),
        role_arn=settings.sagemaker_role_arn,
        instance_type=settings.sagemaker_instance_type,
        instance_count=settings.sagemaker_instance_count,
        environment=container_environment(settings),
        autoscaling=autoscaling,
        timeout_s=settings.deploy_timeout_s,
    )


def render_plan(plan: DeploymentPlan) -> str:
    """Human-readable plan with secrets masked (the ``--dry-run`` output)."""
    role = plan.role_arn or "(not set: LLM_TWIN_SAGEMAKER_ROLE_ARN is required to deploy)"
    lines = [
        f"region:          {plan.region}",
        f"image:           {plan.image_uri}",
        f"model:           {plan.model_name}",
        f"endpoint config: {plan.endpoint_config_name}",
        f"endpoint:        {plan.endpoint_name}",
        f"execution role:  {role}",
        f"instance type:   {plan.instance_type}",
        f"instance count:  {plan.instance_count} (variant {plan.variant_name})",
        "container environment:",
        *(f"  {key}={value}" for key, value in plan.masked_environment().items()),
    ]
    scaling = plan.autoscaling
    if scaling is None:
        lines.append("autoscaling:     off")
    else:
        lines.append(
            f"autoscaling:     {scaling.min_instances}..{scaling.max_instances} instances, target "
            f"{scaling.target_invocations:g} invocations/instance/min, cooldown in "
            f"{scaling.scale_in_cooldown_s}s / out {scaling.scale_out_cooldown_s}s"
        )
    lines.append(f"timeout:         {plan.timeout_s:g}s")
    return "\n".join(lines)


def _versioned(prefix: str, content: object) -> str:
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode("utf-8")).hexdigest()
    head = prefix[: _MAX_NAME - _FINGERPRINT_LEN - 1].rstrip("-")
    return f"{head}-{digest[:_FINGERPRINT_LEN]}"


def is_versioned_name(name: str, prefix: str) -> bool:
    """True for names ``_versioned(prefix, ...)`` produces (used to find leftovers on undeploy)."""
    head = prefix[: _MAX_NAME - _FINGERPRINT_LEN - 1].rstrip("-")
    suffix = name[len(head) + 1 :]
    return (
        name.startswith(head + "-") and len(suffix) == _FINGERPRINT_LEN and all(c in "0123456789abcdef" for c in suffix)
    )
