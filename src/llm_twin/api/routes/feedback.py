"""``POST /feedback``: a user's verdict on an answer, recorded on the answer's trace and in ``/metrics``."""

from __future__ import annotations

import logging

from fastapi import APIRouter

from llm_twin.api.deps import SettingsDep, TelemetryDep
from llm_twin.api.schemas import ErrorResponse, FeedbackRequest, FeedbackResponse
from llm_twin.errors import LLMTwinError
from llm_twin.observability import conventions as oi
from llm_twin.observability.tracing import remote_parent, trace_span

logger = logging.getLogger(__name__)

router = APIRouter(tags=["feedback"])

#: The feedback score's name in trace UIs (Opik shows scores by name).
SCORE_NAME = "user_feedback"


class UnknownTraceError(LLMTwinError):
    """The trace id is not one this instance answered recently."""

    http_status = 404
    code = "unknown_trace"
    public_message = "no recent answer has this trace_id"


@router.post(
    "/feedback",
    response_model=FeedbackResponse,
    summary="Record a user's verdict on an answer (by its trace_id)",
    responses={
        400: {"model": ErrorResponse, "description": "The body could not be read as JSON (e.g. not UTF-8)"},
        404: {"model": ErrorResponse, "description": "No recent answer of this instance has this trace_id"},
        422: {"model": ErrorResponse, "description": "Invalid input; `field` names it"},
    },
)
async def feedback(body: FeedbackRequest, telemetry: TelemetryDep, settings: SettingsDep) -> FeedbackResponse:
    span_id = telemetry.recent.span_of(body.trace_id)
    if span_id is None:
        raise UnknownTraceError()
    # A span in the answer's own trace (a child of its request span), so the verdict shows next to
    # the answer in Phoenix or Opik; the score and comment are its attributes and an event.
    attributes: dict[str, str | float] = {
        oi.SPAN_KIND: oi.CHAIN,
        oi.FEEDBACK_SCORE_NAME: SCORE_NAME,
        oi.FEEDBACK_SCORE_VALUE: body.score,
    }
    if body.comment and settings.trace_content:
        attributes[oi.FEEDBACK_REASON] = body.comment
    with trace_span("feedback", parent_context=remote_parent(body.trace_id, span_id), attributes=attributes) as span:
        if span.is_recording():
            span.add_event(oi.FEEDBACK_EVENT, attributes)
    telemetry.metrics.feedback(body.score)
    logger.info(
        "feedback %s on trace %s",
        body.score,
        body.trace_id,
        extra={"feedback_trace_id": body.trace_id, "score": body.score, "has_comment": body.comment is not None},
    )
    return FeedbackResponse(trace_id=body.trace_id)
