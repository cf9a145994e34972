"""The limits of a question: one check, the same messages for the API, the CLI and the pipeline."""

from __future__ import annotations

import pytest

from llm_twin.domain.limits import MAX_AUTHOR_CHARS, MAX_K, MAX_QUERY_CHARS, check_request
from llm_twin.errors import InvalidInputError


@pytest.mark.parametrize(
    ("kwargs", "field", "message"),
    [
        ({"query": "   "}, "query", "must not be empty"),
        ({"query": "x" * (MAX_QUERY_CHARS + 1)}, "query", f"must be at most {MAX_QUERY_CHARS} characters"),
        ({"query": "ok", "k": 0}, "k", f"must be between 1 and {MAX_K}"),
        ({"query": "ok", "k": MAX_K + 1}, "k", f"must be between 1 and {MAX_K}"),
        ({"query": "ok", "expand_to_n": 0}, "expand_to_n", "must be between 1 and 3 (LLM_TWIN_EXPAND_MAX)"),
        ({"query": "ok", "expand_to_n": 4}, "expand_to_n", "must be between 1 and 3 (LLM_TWIN_EXPAND_MAX)"),
        ({"query": "ok", "author": " "}, "author", "must not be empty"),
        ({"query": "ok", "author": "a" * (MAX_AUTHOR_CHARS + 1)}, "author", "characters"),
    ],
)
def test_each_limit_names_its_field(kwargs: dict, field: str, message: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        check_request(**kwargs, expand_max=3)
    assert info.value.field == field
    assert message in info.value.message


def test_valid_request_returns_the_stripped_query() -> None:
    assert check_request(" q ", k=MAX_K, expand_to_n=3, author="Guido", expand_max=3) == "q"
    assert check_request("x" * MAX_QUERY_CHARS, expand_max=1) == "x" * MAX_QUERY_CHARS
    assert check_request("q", k=None, expand_to_n=None, author=None, expand_max=1) == "q"  # None: the default


def test_history_is_bounded_in_turns_and_characters() -> None:
    from llm_twin.domain.conversation import Turn
    from llm_twin.domain.limits import MAX_HISTORY_CHARS, MAX_HISTORY_TURNS

    ok = [Turn("user", "q"), Turn("assistant", "a")]
    assert check_request("follow-up", history=ok, expand_max=3) == "follow-up"
    too_many = [Turn("user", "q")] * (MAX_HISTORY_TURNS + 1)
    too_long = [Turn("user", "x" * (MAX_HISTORY_CHARS // 2)), Turn("assistant", "y" * (MAX_HISTORY_CHARS // 2 + 1))]
    bad_role = [Turn("system", "be nice")]  # type: ignore[arg-type]
    for history, message in (
        (too_many, f"at most {MAX_HISTORY_TURNS} turns"),
        (too_long, f"at most {MAX_HISTORY_CHARS} characters"),
        (bad_role, "role must be one of user, assistant"),
    ):
        with pytest.raises(InvalidInputError) as info:
            check_request("follow-up", history=history, expand_max=3)
        assert info.value.field == "history" and message in info.value.message
