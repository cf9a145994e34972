"""A two-turn conversation through the ``openai`` SDK against the real app: ingested store, ONNX
embedder, and SmolLM2 as both the generator and the helper LLM that rewrites the follow-up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from conftest import serve, slow_settings
from llm_twin.api.app import create_app

pytestmark = pytest.mark.slow

FIRST = "What did Guido van Rossum write about pattern matching?"
FOLLOW_UP = "What else did he write about code style?"


@pytest.fixture(scope="module")
def client(demo_data_dir: Path) -> Iterator[openai.OpenAI]:
    # The helper LLM on: the shared SmolLM2 writes the standalone question (expansion stays off).
    settings = slow_settings(demo_data_dir, helper_llm_backend="llama-cpp", max_new_tokens=16)
    with (
        serve(create_app(settings)) as url,
        openai.OpenAI(base_url=f"{url}/v1", api_key="not-used", max_retries=0, timeout=300) as sdk,
    ):
        yield sdk


def test_the_follow_up_is_answered_from_the_author_of_the_first_turn(client: openai.OpenAI) -> None:
    assert "twin-guido-van-rossum" in {m.id for m in client.models.list()}
    first = client.chat.completions.create(model="twin", messages=[{"role": "user", "content": FIRST}])
    assert first.author["full_name"] == "Guido van Rossum" and first.rewritten_query is None
    answer = first.choices[0].message.content
    assert "\n\nSources:\n[1]" in answer

    stream = client.chat.completions.create(
        model="twin",
        messages=[
            {"role": "user", "content": FIRST},
            {"role": "assistant", "content": answer},
            {"role": "user", "content": FOLLOW_UP},
        ],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    assert final.choices[0].finish_reason in ("stop", "length")
    # whatever the tiny model wrote as the standalone question, the author carried over deterministically
    assert final.author["full_name"] == "Guido van Rossum"
    assert final.rewritten_query and final.rewritten_query.strip()
    print(f"rewritten: {final.rewritten_query!r}; warnings: {final.warnings}")
    assert final.sources and all("Guido van Rossum" in s["authors"] for s in final.sources)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "\n\nSources:\n[1]" in text
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens > 0
