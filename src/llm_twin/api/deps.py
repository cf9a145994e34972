"""Annotated dependency aliases shared by the routers.

There is deliberately no pipeline dependency: dependencies run before the request body is
validated, and invalid input must get its 422 even while the store is down, so routes call
``service.require_pipeline()`` themselves.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from llm_twin.api.service import ServiceState
from llm_twin.api.telemetry import Telemetry
from llm_twin.settings import Settings


def get_service(request: Request) -> ServiceState:
    return request.app.state.service


ServiceDep = Annotated[ServiceState, Depends(get_service)]


def get_app_settings(service: ServiceDep) -> Settings:
    return service.settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


def get_telemetry(request: Request) -> Telemetry:
    return request.app.state.telemetry


TelemetryDep = Annotated[Telemetry, Depends(get_telemetry)]
