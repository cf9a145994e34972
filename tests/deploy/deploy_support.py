"""Constants and helpers shared by the deploy tests (a unique module name: several conftest.py exist)."""

from __future__ import annotations

import json
import urllib.request

REGION = "us-east-1"
ROLE_ARN = "arn:aws:iam::123456789012:role/twin-sagemaker"
HF_TOKEN = "hf_test_secret_token_value"
# moto knows no g5 instance types; the g4dn ones are in its allow-list.
MOTO_INSTANCE_TYPE = "ml.g4dn.xlarge"

# A direct opener: a proxy from the developer's environment must never see these requests.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def moto_post(url: str, path: str, body: object | None = None) -> None:
    data = json.dumps(body).encode() if body is not None else b""
    request = urllib.request.Request(url + path, data=data, method="POST", headers={"Content-Type": "application/json"})
    with _DIRECT.open(request, timeout=10) as response:
        assert response.status in (200, 201)
