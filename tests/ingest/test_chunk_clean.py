import pytest

from llm_twin.embedding.onnx_embedder import OnnxSentenceEmbedder
from llm_twin.ingest.chunk import TokenChunker
from llm_twin.ingest.clean import clean_text


@pytest.fixture(scope="module")
def chunker() -> TokenChunker:
    embedder = OnnxSentenceEmbedder()
    embedder.warm_up()
    return TokenChunker(embedder.tokenizer, max_tokens=64, overlap=8)


def test_clean_keeps_newlines_and_code_punctuation():
    text = "Title\r\n=========\r\n\r\n\r\n\r\ndef f(x):\n\treturn x[0] + {'a': 1}  \n\x00end"
    cleaned = clean_text(text)
    assert cleaned == "Title\n===\n\ndef f(x):\n    return x[0] + {'a': 1}\nend"


def test_short_text_is_one_chunk(chunker):
    chunks = chunker.split("Fix typo.")
    assert [c.text for c in chunks] == ["Fix typo."]


def test_long_text_windows_fit_and_cover_the_tail(chunker):
    paragraphs = [f"Paragraph {i} talks about pattern matching and the match statement in detail." for i in range(40)]
    text = "\n\n".join(paragraphs)
    chunks = chunker.split(text)
    assert len(chunks) > 5
    assert all(chunker.count(c.text) <= 64 for c in chunks)
    assert chunks[-1].text.endswith("Paragraph 39 talks about pattern matching and the match statement in detail.")
    # Windows end at paragraph breaks, and every chunk is a verbatim slice of the text.
    assert all(c.text.endswith("in detail.") for c in chunks)
    assert all(c.text in text for c in chunks)
    # Overlap: each chunk starts before the previous one ended.
    positions = [text.index(c.text) for c in chunks]
    assert all(positions[i + 1] < positions[i] + len(chunks[i].text) for i in range(len(chunks) - 1))


def test_newlines_survive_chunking(chunker):
    code = "\n".join(f"    value_{i} = compute({i})  # step {i}" for i in range(60))
    chunks = chunker.split(code)
    assert len(chunks) > 1
    assert all("\n" in c.text for c in chunks)
    assert all(line.strip().startswith("value_") for c in chunks for line in c.text.split("\n"))


def test_overlap_must_be_small():
    embedder = OnnxSentenceEmbedder()
    embedder.warm_up()
    with pytest.raises(ValueError):
        TokenChunker(embedder.tokenizer, max_tokens=64, overlap=40)
