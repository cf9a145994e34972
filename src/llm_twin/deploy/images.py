"""Pinned image URI of the HuggingFace LLM (TGI) 2.2.0 deep learning container, per region.

Copied from the sagemaker SDK's ``image_uri_config/huggingface-llm.json`` so deploying does not
need the (large) ``sagemaker`` package: repository ``huggingface-pytorch-tgi-inference``, tag
``<tag_prefix>-gpu-<py>-<container_version>``. ISO partitions are left out (different DNS).
"""

from __future__ import annotations

from llm_twin.deploy.errors import DeployConfigError

TGI_VERSION = "2.2.0"
TGI_REPOSITORY = "huggingface-pytorch-tgi-inference"
TGI_TAG = "2.3.0-tgi2.2.0-gpu-py310-cu121-ubuntu22.04"

#: AWS account that hosts the DLC registry in each region.
TGI_REGISTRIES: dict[str, str] = {
    "af-south-1": "626614931356",
    "ap-east-1": "871362719292",
    "ap-northeast-1": "763104351884",
    "ap-northeast-2": "763104351884",
    "ap-northeast-3": "364406365360",
    "ap-south-1": "763104351884",
    "ap-south-2": "772153158452",
    "ap-southeast-1": "763104351884",
    "ap-southeast-2": "763104351884",
    "ap-southeast-3": "907027046896",
    "ap-southeast-4": "457447274322",
    "ca-central-1": "763104351884",
    "ca-west-1": "204538143572",
    "cn-north-1": "727897471807",
    "cn-northwest-1": "727897471807",
    "eu-central-1": "763104351884",
    "eu-central-2": "380420809688",
    "eu-north-1": "763104351884",
    "eu-south-1": "692866216735",
    "eu-south-2": "503227376785",
    "eu-west-1": "763104351884",
    "eu-west-2": "763104351884",
    "eu-west-3": "763104351884",
    "il-central-1": "780543022126",
    "me-central-1": "914824155844",
    "me-south-1": "217643126080",
    "sa-east-1": "763104351884",
    "us-east-1": "763104351884",
    "us-east-2": "763104351884",
    "us-gov-east-1": "446045086412",
    "us-gov-west-1": "442386744353",
    "us-west-1": "763104351884",
    "us-west-2": "763104351884",
}


def tgi_image_uri(region: str) -> str:
    """ECR URI of the TGI 2.2.0 image in ``region``; raises ``DeployConfigError`` for unknown regions."""
    account = TGI_REGISTRIES.get(region)
    if account is None:
        raise DeployConfigError(
            f"LLM_TWIN_AWS_REGION: no pinned TGI {TGI_VERSION} image for region {region!r}"
            f" (known: {', '.join(sorted(TGI_REGISTRIES))})"
        )
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"{account}.dkr.ecr.{region}.{domain}/{TGI_REPOSITORY}:{TGI_TAG}"
