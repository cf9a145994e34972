"""boto3 plumbing shared by the deploy modules."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

#: Control-plane calls are cheap and idempotent to retry; throttling is common on describe loops.
DEPLOY_CONFIG = Config(retries={"total_max_attempts": 5, "mode": "standard"}, connect_timeout=10, read_timeout=60)

_NOT_FOUND_CODES = frozenset({"ObjectNotFoundException", "ResourceNotFound", "ResourceNotFoundException"})
# SageMaker (and moto) report missing resources as ValidationException; only the text tells.
_NOT_FOUND_TEXT = ("could not find", "not found", "does not exist", "no scalable target", "no scaling policy")


def aws_client(service: str, region: str, *, session: boto3.session.Session | None = None) -> Any:
    """A client on ``session`` or a fresh one (the default session is not thread-safe).

    botocore itself honours ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_<SERVICE>``, so the same code
    runs against AWS, moto or LocalStack without an ``endpoint_url`` argument here.
    """
    # The stubs type one overload per literal service name; ours is chosen at run time.
    return (session or boto3.session.Session()).client(service, region_name=region, config=DEPLOY_CONFIG)  # type: ignore[call-overload]


def is_not_found(error: ClientError) -> bool:
    """True when ``error`` says the resource does not exist (already gone is fine for deletes)."""
    info = error.response.get("Error", {})
    code = info.get("Code", "")
    if code in _NOT_FOUND_CODES:
        return True
    message = str(info.get("Message", "")).lower()
    return code in {"ValidationException", "ValidationError"} and any(text in message for text in _NOT_FOUND_TEXT)


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", "Unknown"))
