import pytest

from llm_twin.domain.authors import Author, author_id, normalize_name
from llm_twin.domain.documents import Chunk, Document, EmbeddedChunk, PayloadError


def test_author_id_is_stable_across_case_accents_and_spacing():
    assert normalize_name("  Łukasz   LANGA ") == "lukasz langa"
    assert author_id("Łukasz Langa") == author_id("lukasz langa") == author_id("LUKASZ  Langa")
    assert author_id("Guido van Rossum") != author_id("Guido van Rossun")
    assert author_id("Guido van Rossum") == "fee4d6fb-49aa-59d6-a34a-d11578b07727"  # persisted ids must not drift


def _doc(text="Some text.", aliases=()):
    author = Author.from_name("Guido van Rossum")
    author.aliases = list(aliases)
    return Document(id="pep-0634", content_type="article", text=text, authors=[author], title="Pattern Matching")


def test_chunk_ids_are_deterministic_and_content_addressed():
    doc = _doc()
    assert Chunk(document=doc, index=0, content="abc").id == Chunk(document=doc, index=0, content="abc").id
    assert Chunk(document=doc, index=0, content="abc").id != Chunk(document=doc, index=0, content="abd").id
    assert Chunk(document=doc, index=0, content="abc").id != Chunk(document=doc, index=1, content="abc").id


def test_content_hash_ignores_evolving_author_aliases():
    assert _doc(aliases=()).content_hash == _doc(aliases=("gvanrossum",)).content_hash
    assert _doc(text="Other text.").content_hash != _doc().content_hash


def test_payload_keeps_the_stored_key_names():
    doc = _doc()
    payload = EmbeddedChunk.from_chunk(
        Chunk(document=doc, index=2, content="abc"), "embedded_articles", metadata={"embedding_size": 384}
    ).to_payload()
    # Existing stores hold exactly these keys: renaming one would lose data on read.
    assert list(payload) == [
        "chunk_id",
        "document_id",
        "chunk_index",
        "content_type",
        "collection",
        "content",
        "author_id",
        "author_full_name",
        "authors",
        "title",
        "link",
        "date",
        "name",
        "metadata",
    ]
    assert payload["author_id"] == [author_id("Guido van Rossum")]
    assert payload["author_full_name"] == "Guido van Rossum" and payload["chunk_index"] == 2
    assert payload["metadata"] == {"embedding_size": 384}


def test_payload_round_trip():
    stored = EmbeddedChunk.from_chunk(Chunk(document=_doc(), index=0, content="abc"), "embedded_articles")
    back = EmbeddedChunk.from_payload(stored.to_payload(), point_id="p", collection="embedded_articles", score=0.5)
    assert back == stored.model_copy(update={"score": 0.5})


def test_payload_without_content_type_is_an_error_not_an_article():
    payload = {"chunk_id": "c", "content": "text"}
    with pytest.raises(PayloadError, match="content_type"):
        EmbeddedChunk.from_payload(payload, point_id="p", collection="embedded_posts")
    chunk = EmbeddedChunk.from_payload(payload | {"content_type": "post"}, point_id="p", collection="embedded_posts")
    assert (chunk.id, chunk.content_type, chunk.author_ids) == ("c", "post", [])
