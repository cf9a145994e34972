"""Annotated dependency aliases shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from llm_twin.api.service import ServiceState
from llm_twin.generation.rag import RAGPipeline
from llm_twin.settings import Settings


def get_service(request: Request) -> ServiceState:
    return request.app.state.service


ServiceDep = Annotated[ServiceState, Depends(get_service)]


def get_app_settings(service: ServiceDep) -> Settings:
    return service.settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


async def get_pipeline(service: ServiceDep) -> RAGPipeline:
    """The warmed pipeline; raises the startup error (store / LLM unavailable → 503) otherwise.

    Dependencies run before the request body is validated, so routes whose invalid input must
    win over a 503 (``POST /rag``) call ``service.require_pipeline()`` themselves instead.
    """
    return await service.require_pipeline()


PipelineDep = Annotated[RAGPipeline, Depends(get_pipeline)]
