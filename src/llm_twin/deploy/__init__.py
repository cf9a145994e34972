"""Deploy the twin LLM to a SageMaker endpoint running the HuggingFace TGI image (plain boto3).

``plan`` turns settings into a ``DeploymentPlan``; ``strategy`` maps the plan onto SageMaker
resources; ``resource_manager`` makes deploy/undeploy idempotent; ``autoscaling`` manages the
Application Auto Scaling target and policy; ``commands`` adds ``llm-twin deploy|undeploy``.
"""

from llm_twin.deploy.errors import DeployConfigError, DeployError, DeployTimeoutError, EndpointFailedError
from llm_twin.deploy.plan import AutoscalingSpec, DeploymentPlan, build_plan, render_plan

__all__ = [
    "AutoscalingSpec",
    "DeployConfigError",
    "DeployError",
    "DeployTimeoutError",
    "DeploymentPlan",
    "EndpointFailedError",
    "build_plan",
    "render_plan",
]
