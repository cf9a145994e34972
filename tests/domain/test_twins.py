"""Twins as model ids: stable slugs, one per person, and a 404 naming the field for an unknown one."""

from __future__ import annotations

import pytest

from llm_twin.domain.authors import Author
from llm_twin.domain.twins import ALL_AUTHORS_MODEL, TwinCatalog, UnknownTwinError, name_slug


def test_slugs_are_ascii_words_joined_by_dashes() -> None:
    assert name_slug("Guido van Rossum") == "guido-van-rossum"
    assert name_slug("Łukasz Langa") == "lukasz-langa"
    assert name_slug("Eric V. Smith") == "eric-v-smith"
    assert name_slug("李") == ""


def test_the_catalog_has_twin_plus_one_model_per_person() -> None:
    people = [Author.from_name("Guido van Rossum"), Author.from_name("Łukasz Langa"), Author.from_name("李")]
    catalog = TwinCatalog(people)
    ids = [twin.model_id for twin in catalog]
    assert ids[0] == ALL_AUTHORS_MODEL and catalog.get("twin").author is None
    assert "twin-guido-van-rossum" in ids and "twin-lukasz-langa" in ids
    assert f"twin-{people[2].id[:8]}" in ids  # no Latin letters: the id stands in
    assert catalog.get("twin-guido-van-rossum").author == people[0]
    assert [t.model_id for t in TwinCatalog(reversed(people))] == ids  # order of the registry does not matter


def test_two_people_with_one_slug_get_distinct_stable_ids() -> None:
    a, b = Author.from_name("Jose Garcia"), Author.from_name("José García")
    a = a.model_copy(update={"id": "aaaaaaaa-1"})
    b = b.model_copy(update={"id": "bbbbbbbb-2"})
    assert {t.model_id for t in TwinCatalog([b, a])} == {"twin", "twin-jose-garcia", "twin-jose-garcia-bbbbbbbb"}


def test_an_unknown_model_is_a_404_on_the_model_field() -> None:
    with pytest.raises(UnknownTwinError) as info:
        TwinCatalog([]).get("gpt-4o")
    assert info.value.http_status == 404 and info.value.code == "model_not_found" and info.value.field == "model"
    assert "'gpt-4o'" in info.value.safe_message
