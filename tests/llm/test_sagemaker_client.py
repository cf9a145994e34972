"""SagemakerTGIClient offline: payload, parsing, streaming across chunk boundaries, error mapping."""

from __future__ import annotations

import io
import json

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError, ReadTimeoutError
from botocore.response import StreamingBody
from botocore.stub import Stubber

from llm_twin.errors import LLMTimeoutError, LLMUnavailableError
from llm_twin.llm.base import GenerationParams, LLMClient
from llm_twin.llm.chat_templates import alpaca, chatml, llama3, template_for
from llm_twin.llm.sagemaker import SagemakerTGIClient, iter_tgi_stream, tgi_parameters
from llm_twin.settings import load_settings

MESSAGES = [{"role": "system", "content": "You are Paul."}, {"role": "user", "content": "What is RAG?"}]


@pytest.fixture
def offline_aws(monkeypatch, tmp_path):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": str(tmp_path / "c"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "k"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def _runtime():
    return boto3.session.Session().client(
        "sagemaker-runtime", region_name="us-east-1", endpoint_url="http://127.0.0.1:9"
    )


def _body(payload: object) -> StreamingBody:
    raw = json.dumps(payload).encode()
    return StreamingBody(io.BytesIO(raw), len(raw))


def test_llama3_template_is_the_header_format():
    assert llama3(MESSAGES) == (
        "<|start_header_id|>system<|end_header_id|>\n\nYou are Paul.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWhat is RAG?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert template_for("auto", "mlabonne/TwinLlama-3.1-8B-DPO") is llama3
    assert template_for("auto", "Qwen/Qwen2.5-7B-Instruct") is chatml
    assert alpaca(MESSAGES).endswith("### Instruction:\nWhat is RAG?\n\n### Response:\n")
    with pytest.raises(ValueError):
        template_for("vicuna")


def test_tgi_parameters_leave_out_values_tgi_rejects():
    assert tgi_parameters(GenerationParams(max_new_tokens=10, temperature=0.0, top_p=0.5)) == {
        "max_new_tokens": 10,
        "return_full_text": False,
        "repetition_penalty": 1.1,
    }
    sampled = tgi_parameters(GenerationParams(temperature=0.7, top_p=1.0, stop=("a", "b", "c", "d", "e")))
    assert sampled["temperature"] == 0.7 and "top_p" not in sampled
    assert sampled["stop"] == ["a", "b", "c", "d"]


def test_complete_sends_tgi_payload_and_parses_answer(offline_aws):
    settings = load_settings(
        sagemaker_endpoint_name="twin-prod", sagemaker_inference_component="twin-ic", aws_region="us-east-1"
    )
    runtime = _runtime()
    client = SagemakerTGIClient(settings, client=runtime)
    prompt = llama3(MESSAGES)
    expected_body = json.dumps(
        {
            "inputs": prompt,
            "parameters": {
                "max_new_tokens": 32,
                "return_full_text": False,
                "repetition_penalty": 1.2,
                "temperature": 0.3,
                "top_p": 0.9,
            },
        }
    ).encode()
    with Stubber(runtime) as stub:
        stub.add_response(
            "invoke_endpoint",
            {
                "Body": _body(
                    [
                        {
                            "generated_text": "Retrieval-augmented generation.",
                            "details": {"finish_reason": "eos_token", "generated_tokens": 5},
                        }
                    ]
                )
            },
            {
                "EndpointName": "twin-prod",
                "InferenceComponentName": "twin-ic",
                "Body": expected_body,
                "ContentType": "application/json",
                "Accept": "application/json",
            },
        )
        completion = client.complete(
            MESSAGES, GenerationParams(max_new_tokens=32, temperature=0.3, repetition_penalty=1.2)
        )

    assert isinstance(client, LLMClient)
    assert completion.text == "Retrieval-augmented generation."
    assert (completion.finish_reason, completion.completion_tokens) == ("eos_token", 5)
    assert client.context_window == settings.max_total_tokens


@pytest.mark.parametrize(
    ("code", "message", "extra", "summary"),
    [
        (
            "ModelError",
            "Received client error (422) from primary: secret stack trace",
            {"OriginalStatusCode": 422},
            "model error (status 422)",
        ),
        ("ValidationError", "Endpoint twin of account 123456789012 not found.", {}, "endpoint not found"),
        ("ThrottlingException", "Rate exceeded", {}, "temporarily unavailable (ThrottlingException)"),
    ],
)
def test_client_errors_become_unavailable_with_a_safe_summary(offline_aws, code, message, extra, summary):
    runtime = _runtime()
    client = SagemakerTGIClient(load_settings(llm_max_retries=0), client=runtime)
    with Stubber(runtime) as stub:
        stub.add_client_error("invoke_endpoint", code, message, response_meta={}, modeled_fields=extra or None)
        with pytest.raises(LLMUnavailableError) as caught:
            client.complete(MESSAGES, GenerationParams())

    assert str(caught.value) == f"SageMaker endpoint 'twin': {summary}"
    assert "secret" not in str(caught.value) and "123456789012" not in str(caught.value)


class _FailingRuntime:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def invoke_endpoint(self, **_kwargs):
        raise self.error

    def invoke_endpoint_with_response_stream(self, **_kwargs):
        raise self.error


def test_read_timeout_and_connection_errors_are_mapped():
    settings = load_settings(llm_timeout_s=30)
    timeout = SagemakerTGIClient(settings, client=_FailingRuntime(ReadTimeoutError(endpoint_url="http://x")))
    down = SagemakerTGIClient(settings, client=_FailingRuntime(EndpointConnectionError(endpoint_url="http://x")))

    with pytest.raises(LLMTimeoutError, match="did not answer within 30s"):
        timeout.complete(MESSAGES, GenerationParams())
    with pytest.raises(LLMUnavailableError, match="cannot be reached"):
        list(down.stream(MESSAGES, GenerationParams()))


def test_unexpected_body_is_unavailable(offline_aws):
    runtime = _runtime()
    client = SagemakerTGIClient(load_settings(), client=runtime)
    with Stubber(runtime) as stub:
        error = {"error": "Input validation error", "error_type": "validation"}
        stub.add_response("invoke_endpoint", {"Body": _body(error)})
        with pytest.raises(LLMUnavailableError, match=r"reported an error \(validation\)"):
            client.complete(MESSAGES, GenerationParams())


def test_stream_parses_events_split_across_payload_parts():
    events = (
        'data:{"token": {"id": 1, "text": "Hel", "special": false}}\n\n'
        'data:{"token": {"id": 2, "text": "lo, café", "special": false}}\n\n'
        'data:{"token": {"id": 3, "text": "</s>", "special": true}, "generated_text": "Hello, café"}\n\n'
    ).encode()
    cut = events.index("é".encode()) + 1  # split inside a multi-byte character too
    chunks = [events[:7], events[7:cut], events[cut : cut + 3], events[cut + 3 :]]

    assert "".join(iter_tgi_stream(chunks)) == "Hello, café"
    assert list(iter_tgi_stream([b'data:{"token": {"text": "end"}}'])) == ["end"]  # no trailing newline
    with pytest.raises(LLMUnavailableError):
        list(iter_tgi_stream([b'data:{"error": "CUDA OOM", "error_type": "generation"}\n']))


class _StreamingRuntime:
    def __init__(self, parts: list[bytes]) -> None:
        self.parts = parts
        self.request: dict = {}

    def invoke_endpoint_with_response_stream(self, **kwargs):
        self.request = kwargs
        return {"Body": [{"PayloadPart": {"Bytes": part}} for part in self.parts]}


def test_stream_sends_stream_payload_and_yields_tokens():
    runtime = _StreamingRuntime([b'data:{"token": {"text": "Hi"}}\n\ndata:{"tok', b'en": {"text": " there"}}\n\n'])
    client = SagemakerTGIClient(load_settings(sagemaker_inference_component="twin-ic"), client=runtime)

    assert list(client.stream(MESSAGES, GenerationParams())) == ["Hi", " there"]
    assert runtime.request["InferenceComponentName"] == "twin-ic"
    assert json.loads(runtime.request["Body"])["stream"] is True


def test_warm_up_creates_one_client_honouring_aws_endpoint_url(offline_aws, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    client = SagemakerTGIClient(load_settings(aws_region="eu-west-1", llm_timeout_s=45, llm_max_retries=3))

    client.warm_up()
    runtime = client._runtime()
    client.warm_up()

    assert client._runtime() is runtime
    assert runtime.meta.endpoint_url == "http://127.0.0.1:4566"
    assert runtime.meta.region_name == "eu-west-1"
    assert runtime.meta.config.read_timeout == 45
    assert runtime.meta.config.retries["total_max_attempts"] == 4
    assert client.count_tokens("abcdefgh") == 2
