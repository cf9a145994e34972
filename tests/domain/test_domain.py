from llm_twin.domain.authors import Author, author_id, normalize_name
from llm_twin.domain.documents import Chunk, Document, EmbeddedChunk


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


def test_to_context_is_text_not_a_repr():
    chunk = EmbeddedChunk(
        id="1", collection="embedded_articles", content_type="article", document_id="pep-0634", chunk_index=0,
        content="The match statement.\n", author_ids=["x"], author_full_name="Guido van Rossum",
        title="Structural Pattern Matching", link="https://peps.python.org/pep-0634/",
    )
    text = chunk.to_context()
    assert text == (
        "type: article\ntitle: Structural Pattern Matching\nauthor: Guido van Rossum\n"
        "link: https://peps.python.org/pep-0634/\nThe match statement."
    )
    assert "EmbeddedChunk" not in text
