"""Deployment failures; messages are one line, meant for the operator running the CLI."""

from __future__ import annotations

from llm_twin.errors import EXIT_USAGE, LLMTwinError


class DeployError(LLMTwinError):
    """A deploy or undeploy step failed."""


class DeployConfigError(DeployError):
    """Settings cannot produce a deployable plan (missing role ARN, unknown region, ...)."""

    exit_code = EXIT_USAGE


class EndpointFailedError(DeployError):
    """SageMaker put the endpoint in ``Failed``; the message carries its ``FailureReason``."""


class DeployTimeoutError(DeployError):
    """The endpoint did not reach ``InService`` within ``deploy_timeout_s``."""
