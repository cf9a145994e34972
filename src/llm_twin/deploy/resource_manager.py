"""Idempotent SageMaker model / endpoint config / endpoint lifecycle.

Looks at what exists, then: endpoint absent -> create; present with another config -> new config
and ``update_endpoint``; present with the same config -> nothing. Models and endpoint configs are
immutable in SageMaker, so "different" means "another name" (see ``plan`` for the naming).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from botocore.exceptions import ClientError

from llm_twin.deploy.aws import is_not_found
from llm_twin.deploy.errors import DeployError, DeployTimeoutError, EndpointFailedError
from llm_twin.deploy.plan import is_versioned_name

#: States SageMaker leaves on its own; anything else (besides InService) needs a human.
TRANSITIONAL = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack"})

Progress = Callable[[str], None]


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    NONE = "none"


@dataclass(frozen=True)
class EndpointState:
    status: str | None = None  # None: the endpoint does not exist
    config_name: str | None = None
    model_names: tuple[str, ...] = ()
    failure_reason: str | None = None

    @property
    def exists(self) -> bool:
        return self.status is not None


@dataclass(frozen=True)
class EndpointSpec:
    """The desired resources, as SageMaker request fragments."""

    endpoint_name: str
    config_name: str
    model_name: str
    model_request: dict[str, Any] = field(repr=False)  # create_model kwargs besides ModelName
    production_variants: list[dict[str, Any]] = field(default_factory=list)


class ResourceManager:
    """Drives one ``sagemaker`` boto3 client; waiting is injectable (sleep/clock) for tests."""

    def __init__(
        self,
        client: Any,
        *,
        timeout_s: float = 1800.0,
        poll_interval_s: float = 15.0,
        progress: Progress = lambda _message: None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._timeout_s = timeout_s
        self._poll_interval_s = poll_interval_s
        self._progress = progress
        self._sleep = sleep
        self._clock = clock

    # --- looking -------------------------------------------------------------------------------
    def inspect(self, endpoint_name: str) -> EndpointState:
        try:
            endpoint = self._client.describe_endpoint(EndpointName=endpoint_name)
        except ClientError as error:
            if is_not_found(error):
                return EndpointState()
            raise
        config_name = endpoint.get("EndpointConfigName")
        return EndpointState(
            status=endpoint["EndpointStatus"],
            config_name=config_name,
            model_names=self._config_models(config_name) if config_name else (),
            failure_reason=endpoint.get("FailureReason"),
        )

    def settle(self, endpoint_name: str) -> EndpointState:
        """The endpoint's state once SageMaker has finished whatever it is doing to it."""
        state = self.inspect(endpoint_name)
        if state.status in TRANSITIONAL:
            self._progress(f"endpoint {endpoint_name!r} is {state.status}; waiting before changing it")
            self.wait_in_service(endpoint_name)
            state = self.inspect(endpoint_name)
        return state

    def decide(self, state: EndpointState, spec: EndpointSpec) -> Action:
        if not state.exists:
            return Action.CREATE
        if state.status == "Failed":
            # SageMaker cannot update a Failed endpoint; it has to be deleted first.
            raise EndpointFailedError(
                f"endpoint {spec.endpoint_name!r} is Failed ({state.failure_reason or 'no reason given'}); "
                "run `llm-twin undeploy`, then deploy again"
            )
        if state.status != "InService":
            raise DeployError(f"endpoint {spec.endpoint_name!r} is {state.status}; retry when it is InService or gone")
        return Action.NONE if state.config_name == spec.config_name else Action.UPDATE

    # --- changing ------------------------------------------------------------------------------
    def apply(self, action: Action, spec: EndpointSpec, state: EndpointState) -> None:
        if action is Action.NONE:
            return
        self._ensure_model(spec)
        self._ensure_config(spec)
        if action is Action.CREATE:
            self._progress(f"creating endpoint {spec.endpoint_name!r} with config {spec.config_name!r}")
            self._client.create_endpoint(EndpointName=spec.endpoint_name, EndpointConfigName=spec.config_name)
        else:
            self._progress(f"updating endpoint {spec.endpoint_name!r}: {state.config_name!r} -> {spec.config_name!r}")
            self._client.update_endpoint(EndpointName=spec.endpoint_name, EndpointConfigName=spec.config_name)
        self.wait_in_service(spec.endpoint_name, expected_config=spec.config_name)
        if action is Action.UPDATE:
            self._delete_replaced(state, spec)

    def wait_in_service(self, endpoint_name: str, expected_config: str | None = None) -> None:
        """Poll until InService; raise on Failed, on a rolled-back update, or after the timeout."""
        started = self._clock()
        while True:
            endpoint = self._client.describe_endpoint(EndpointName=endpoint_name)
            status = endpoint["EndpointStatus"]
            elapsed = self._clock() - started
            if status == "InService":
                if expected_config and endpoint.get("EndpointConfigName") != expected_config:
                    # A failed update rolls back: InService again, but on the old config.
                    reason = endpoint.get("FailureReason") or "rolled back to the previous config"
                    raise EndpointFailedError(f"update of endpoint {endpoint_name!r} failed: {reason}")
                self._progress(f"endpoint {endpoint_name!r} is InService ({elapsed:.0f}s)")
                return
            if status not in TRANSITIONAL:
                reason = endpoint.get("FailureReason") or "no reason given"
                raise EndpointFailedError(f"endpoint {endpoint_name!r} is {status}: {reason}")
            if elapsed >= self._timeout_s:
                raise DeployTimeoutError(
                    f"endpoint {endpoint_name!r} still {status} after {self._timeout_s:.0f}s "
                    "(SageMaker keeps going: rerun deploy to keep waiting, or undeploy)"
                )
            self._progress(f"endpoint {endpoint_name!r}: {status} ({elapsed:.0f}s elapsed)")
            self._sleep(min(self._poll_interval_s, max(self._timeout_s - elapsed, 0.0)))

    def delete(self, endpoint_name: str, *, config_prefix: str, model_prefix: str) -> list[str]:
        """Delete the endpoint, its config and models, and leftovers named like ours; missing is fine."""
        removed: list[str] = []
        state = self.inspect(endpoint_name)
        configs = {state.config_name} if state.config_name else set()
        models = set(state.model_names)
        if state.exists and self._call_if_present("delete_endpoint", EndpointName=endpoint_name):
            removed.append(f"endpoint {endpoint_name}")
            self._wait_gone(endpoint_name)
        configs |= set(
            self._list_names("list_endpoint_configs", "EndpointConfigs", "EndpointConfigName", config_prefix)
        )
        for config in sorted(configs):
            models |= set(self._config_models(config))
            if self._call_if_present("delete_endpoint_config", EndpointConfigName=config):
                removed.append(f"endpoint config {config}")
        models |= set(self._list_names("list_models", "Models", "ModelName", model_prefix))
        for model in sorted(models):
            if self._call_if_present("delete_model", ModelName=model):
                removed.append(f"model {model}")
        return removed

    # --- helpers -------------------------------------------------------------------------------
    def _ensure_model(self, spec: EndpointSpec) -> None:
        if self._call_if_present("describe_model", ModelName=spec.model_name):
            return
        self._progress(f"creating model {spec.model_name!r}")
        self._client.create_model(ModelName=spec.model_name, **spec.model_request)

    def _ensure_config(self, spec: EndpointSpec) -> None:
        if self._call_if_present("describe_endpoint_config", EndpointConfigName=spec.config_name):
            return
        self._progress(f"creating endpoint config {spec.config_name!r}")
        self._client.create_endpoint_config(
            EndpointConfigName=spec.config_name, ProductionVariants=spec.production_variants
        )

    def _delete_replaced(self, old: EndpointState, spec: EndpointSpec) -> None:
        """After a successful update, the previous config (and models no longer used) are garbage."""
        if old.config_name and old.config_name != spec.config_name:
            self._call_if_present("delete_endpoint_config", EndpointConfigName=old.config_name)
        for model in old.model_names:
            if model != spec.model_name:
                self._call_if_present("delete_model", ModelName=model)

    def _config_models(self, config_name: str) -> tuple[str, ...]:
        try:
            config = self._client.describe_endpoint_config(EndpointConfigName=config_name)
        except ClientError as error:
            if is_not_found(error):
                return ()
            raise
        return tuple(v["ModelName"] for v in config.get("ProductionVariants", []) if v.get("ModelName"))

    def _call_if_present(self, operation: str, **kwargs: Any) -> bool:
        """Call a describe/delete verb; False when the resource does not exist (already gone)."""
        try:
            getattr(self._client, operation)(**kwargs)
        except ClientError as error:
            if is_not_found(error):
                return False
            raise
        return True

    def _list_names(self, operation: str, key: str, name_key: str, prefix: str) -> Iterable[str]:
        # NameContains narrows server-side; the exact pattern check keeps other teams' resources safe.
        for page in self._client.get_paginator(operation).paginate(NameContains=prefix):
            for item in page.get(key, []):
                if is_versioned_name(item[name_key], prefix):
                    yield item[name_key]

    def _wait_gone(self, endpoint_name: str) -> None:
        """Deleting an endpoint is asynchronous; its config can go once it has."""
        started = self._clock()
        while self._call_if_present("describe_endpoint", EndpointName=endpoint_name):
            if self._clock() - started >= self._timeout_s:
                raise DeployTimeoutError(f"endpoint {endpoint_name!r} still deleting after {self._timeout_s:.0f}s")
            self._progress(f"endpoint {endpoint_name!r}: Deleting")
            self._sleep(self._poll_interval_s)
