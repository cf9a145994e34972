"""Rerankers: the ONNX cross-encoder on a test model built from the bundled MiniLM, the LLM scorer, none."""

from __future__ import annotations

import json
import logging
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from llm_twin.domain.documents import EmbeddedChunk
from llm_twin.llm.base import Completion, TokenScorer
from llm_twin.llm.openai_compat import parse_openai_logprobs
from llm_twin.models import ModelNotFoundError
from llm_twin.retrieval.rerankers.base import (
    DEFAULT_SEARCH_WEIGHT,
    RerankerConfigError,
    SearchFusion,
    fuse_with_search_rank,
    fuse_with_search_score,
    logits_to_scores,
)
from llm_twin.retrieval.rerankers.factory import build_reranker
from llm_twin.retrieval.rerankers.llm_yes_no import LlmYesNoReranker, yes_no_score
from llm_twin.retrieval.rerankers.none import NoopReranker
from llm_twin.retrieval.rerankers.onnx_cross_encoder import OnnxCrossEncoderReranker
from llm_twin.retrieval.rerankers.st_cross_encoder import SentenceTransformersCrossEncoderReranker
from llm_twin.settings import load_settings
from onnx_models import build_test_cross_encoder

QUERY = "How does Python's structural pattern matching work?"
PASSAGES = [
    "PEP 634 specifies the match statement: a subject is compared against case patterns in order.",
    "The walrus operator assigns values to variables as part of an expression.",
    "Black is an uncompromising code formatter. " * 30,  # long: exercises truncation and padding
    "asyncio.TaskGroup cancels the remaining tasks when one of them fails.",
    "Class patterns match instances and can extract attributes through __match_args__.",
    "pip resolves dependencies with a backtracking resolver.",
    "Mapping patterns match dictionaries; extra keys are ignored unless **rest is used.",
]


def _chunks(texts: list[str] = PASSAGES) -> list[EmbeddedChunk]:
    return [
        EmbeddedChunk(
            id=f"c{i}",
            collection="embedded_articles",
            content_type="article",
            document_id=f"d{i}",
            chunk_index=0,
            content=text,
            author_ids=["a"],
            author_full_name="A",
            title=f"T{i}",
            score=1.0 - i / 100,
        )
        for i, text in enumerate(texts)
    ]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_test_cross_encoder(tmp_path_factory.mktemp("models") / "cross-encoder" / "test-minilm")


def test_test_model_is_built_idempotently(model_dir: Path) -> None:
    assert {"model.onnx", "tokenizer.json", "config.json"} <= {p.name for p in model_dir.iterdir()}
    mtime = (model_dir / "model.onnx").stat().st_mtime_ns
    assert build_test_cross_encoder(model_dir) == model_dir
    assert (model_dir / "model.onnx").stat().st_mtime_ns == mtime


def test_loads_by_directory_and_scores(model_dir: Path) -> None:
    reranker = OnnxCrossEncoderReranker(str(model_dir), top_n=20)
    reranker.warm_up()
    chunks = _chunks()
    ranked = reranker.run(QUERY, chunks, top_k=5)
    assert len(ranked) == 5
    scores = [c.score for c in ranked]
    assert scores == sorted(scores, reverse=True)
    assert all(np.isfinite(scores))
    by_id = {c.id: c for c in chunks}
    for chunk in ranked:
        assert chunk.metadata["rerank_score"] == chunk.score
        assert chunk.metadata["search_score"] == by_id[chunk.id].score  # the search score is kept
    assert [c.score for c in chunks] == [1.0 - i / 100 for i in range(len(chunks))]  # inputs untouched


def test_batching_matches_one_by_one(model_dir: Path) -> None:
    batched = OnnxCrossEncoderReranker(str(model_dir), batch_size=16).score(QUERY, PASSAGES)
    single = OnnxCrossEncoderReranker(str(model_dir), batch_size=1).score(QUERY, PASSAGES)
    pairs_of_three = OnnxCrossEncoderReranker(str(model_dir), batch_size=3).score(QUERY, PASSAGES)
    assert batched.shape == (len(PASSAGES),)
    np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(pairs_of_three, single, rtol=1e-4, atol=1e-4)
    assert len(set(np.round(single, 5))) > 1  # the head really depends on the input


def test_padded_tokens_counts_what_batching_pads(model_dir: Path) -> None:
    one_by_one = OnnxCrossEncoderReranker(str(model_dir), batch_size=1).padded_tokens(QUERY, PASSAGES)
    run, padding = OnnxCrossEncoderReranker(str(model_dir), batch_size=16).padded_tokens(QUERY, PASSAGES)
    assert one_by_one[1] == 0 and one_by_one[0] > 0  # a pair alone is never padded
    assert run - padding == one_by_one[0]  # the real tokens are the same however they are batched
    assert padding > 0  # PASSAGES differ in length, so a batch of them pads
    assert OnnxCrossEncoderReranker(str(model_dir)).padded_tokens(QUERY, []) == (0, 0)


def test_long_passages_are_truncated(model_dir: Path) -> None:
    reranker = OnnxCrossEncoderReranker(str(model_dir), max_length=64)
    scores = reranker.score(QUERY, ["word " * 5000, "short passage"])
    assert np.all(np.isfinite(scores))


def test_only_top_n_are_scored(model_dir: Path) -> None:
    reranker = OnnxCrossEncoderReranker(str(model_dir), top_n=3)
    seen: list[int] = []
    original = reranker.score

    def spy(query: str, passages):
        seen.append(len(passages))
        return original(query, passages)

    reranker.score = spy  # type: ignore[method-assign]
    chunks = _chunks()
    ranked = reranker.run(QUERY, chunks, top_k=len(chunks))
    assert seen == [3]
    assert {c.id for c in ranked[:3]} == {"c0", "c1", "c2"}
    assert all("rerank_score" in c.metadata for c in ranked[:3])
    # the unscored tail follows in search order, with its search score
    assert [c.id for c in ranked[3:]] == ["c3", "c4", "c5", "c6"]
    assert [c.score for c in ranked[3:]] == [c.score for c in chunks[3:]]
    assert reranker.run(QUERY, chunks, top_k=2) == ranked[:2]
    assert reranker.run(QUERY, [], top_k=5) == []


def test_fusion_with_the_search_rank() -> None:
    # Candidates arrive in search order; the model prefers the reverse.
    model = [0.0, 1.0, 2.0]
    assert fuse_with_search_rank(model, 0.0) == model  # 0: the model's own scores
    equal = fuse_with_search_rank(model, 1.0)
    assert equal[0] == pytest.approx(equal[2]) and equal[0] > equal[1]  # a full reversal cancels out
    assert np.argmax(fuse_with_search_rank(model, 0.5)) == 2  # the model leads
    assert np.argmax(fuse_with_search_rank(model, 2.0)) == 0  # the search leads
    agree = fuse_with_search_rank([3.0, 2.0, 1.0], 1.0)
    assert agree == sorted(agree, reverse=True)  # where they agree, the order stays


def test_fusion_with_the_search_score_keeps_the_margins() -> None:
    search = [1.0, 0.5, 0.0]  # in search order
    model = [0.0, 0.9, 1.0]  # the model's first and second are close; its last is far behind
    assert fuse_with_search_score(model, search, 0.0) == model  # 0: the model's own scores
    # by score, the candidate both rate high wins; by rank, it is only one candidate among equals
    assert np.argmax(fuse_with_search_score(model, search, 1.0)) == 1
    assert np.argmax(fuse_with_search_rank(model, 1.0)) != 1
    assert fuse_with_search_score([5.0, -3.0], [0.2, 0.1], 1.0) == pytest.approx([2.0, 0.0])  # min-max: scale-free
    assert fuse_with_search_score([2.0, 2.0], [0.3, 0.1], 1.0) == pytest.approx([1.0, 0.0])  # a flat model: the search
    assert fuse_with_search_score([], [], 1.0) == []
    with pytest.raises(ValueError, match="2 reranker scores for 1 search scores"):
        fuse_with_search_score([1.0, 0.0], [1.0], 1.0)


@pytest.mark.parametrize("fusion", ["score", "rank"])
def test_fused_reranker_keeps_the_search_top_against_a_reversed_model(model_dir: Path, fusion: SearchFusion) -> None:
    alone = OnnxCrossEncoderReranker(str(model_dir), top_n=20)
    fused = OnnxCrossEncoderReranker(str(model_dir), top_n=20, search_weight=4.0, fusion=fusion)
    assert f"fused with the search {fusion} at weight 4" in fused.description
    chunks = _chunks()
    by_model = [c.id for c in alone.run(QUERY, chunks, top_k=len(chunks))]
    model_rank = {cid: i for i, cid in enumerate(by_model)}
    reversed_order = sorted(chunks, key=lambda c: model_rank[c.id], reverse=True)  # the model's worst first
    search_first = [c.model_copy(update={"score": 1.0 - i / 10}) for i, c in enumerate(reversed_order)]
    ranked = fused.run(QUERY, search_first, top_k=len(chunks))
    assert ranked[0].id == search_first[0].id != by_model[0]  # a heavy search weight keeps the search's first
    assert ranked[0].metadata["search_score"] == search_first[0].score


def test_model_loads_once_per_process(model_dir: Path) -> None:
    first = OnnxCrossEncoderReranker(str(model_dir))
    second = OnnxCrossEncoderReranker(str(model_dir))
    first.warm_up()
    second.warm_up()
    assert first._loaded is second._loaded


def test_known_id_is_looked_up_under_models_dir(model_dir: Path, tmp_path: Path) -> None:
    models_dir = model_dir.parent.parent
    reranker = OnnxCrossEncoderReranker("cross-encoder/test-minilm", models_dir=models_dir)
    assert len(reranker.score(QUERY, PASSAGES[:2])) == 2
    missing = OnnxCrossEncoderReranker("cross-encoder/ms-marco-MiniLM-L-6-v2", models_dir=tmp_path)
    with pytest.raises(ModelNotFoundError, match="no hub downloads"):
        missing.warm_up()


def test_logits_to_scores() -> None:
    np.testing.assert_allclose(logits_to_scores(np.array([[0.5], [-1.0]])), [0.5, -1.0])
    np.testing.assert_allclose(logits_to_scores(np.array([[0.0, 2.0], [1.0, -1.0]])), [2.0, -2.0])
    np.testing.assert_allclose(logits_to_scores(np.array([3.0])), [3.0])
    with pytest.raises(ValueError):
        logits_to_scores(np.zeros((2, 3)))


def test_noop_keeps_order_and_scores() -> None:
    chunks = _chunks()
    ranked = NoopReranker().run(QUERY, chunks, top_k=4)
    assert ranked == chunks[:4]
    assert NoopReranker().name == "none"


# --- factory ----------------------------------------------------------------------------------


def _settings(tmp_path: Path, **overrides):
    return load_settings(data_dir=tmp_path, **overrides)


def test_auto_is_none_when_nothing_is_configured(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="llm_twin.retrieval.rerankers.factory"):
        reranker = build_reranker(_settings(tmp_path, rerank_backend="auto", rerank_model=None))
    assert isinstance(reranker, NoopReranker) and reranker.name == "none"
    assert "LLM_TWIN_RERANK_MODEL" in reranker.reason
    assert "rerank: none" in caplog.text  # stated at start-up, never silent


def test_auto_finds_a_cross_encoder_under_models_dir(tmp_path: Path) -> None:
    settings = _settings(tmp_path, rerank_backend="auto", rerank_model=None, rerank_top_n=7)
    build_test_cross_encoder(settings.models_dir / "cross-encoder" / "mini")
    reranker = build_reranker(settings)
    assert isinstance(reranker, OnnxCrossEncoderReranker)
    assert reranker.name == "cross-encoder" and reranker.top_n == 7
    assert settings.rerank_search_weight is None and reranker.search_weight == DEFAULT_SEARCH_WEIGHT == 2.0
    assert reranker.fusion == settings.rerank_fusion == "score"  # the default: the model's margins count
    assert "fused with the search score at weight 2" in reranker.description
    by_rank = build_reranker(settings.model_copy(update={"rerank_fusion": "rank"}))
    assert isinstance(by_rank, OnnxCrossEncoderReranker) and by_rank.fusion == "rank"
    alone = build_reranker(settings.model_copy(update={"rerank_search_weight": 0.0}))
    assert isinstance(alone, OnnxCrossEncoderReranker) and alone.search_weight == 0.0
    assert "fused" not in alone.description


def test_search_weight_is_the_setting_else_the_models_training_choice_else_the_default(tmp_path: Path) -> None:
    settings = _settings(tmp_path, rerank_backend="auto", rerank_model=None)
    model = build_test_cross_encoder(settings.models_dir / "cross-encoder" / "mini")
    assert build_reranker(settings).search_weight == DEFAULT_SEARCH_WEIGHT  # no training.json
    # What `llm-twin train reranker` writes when it had labelled held-out queries to choose on.
    (model / "training.json").write_text(json.dumps({"search_weight": 1.0, "search_fusion": "score"}))
    trained = build_reranker(settings)
    assert trained.search_weight == 1.0 and "at weight 1)" in trained.description
    # Chosen for score fusion: it says nothing about rank fusion, which keeps the default.
    assert build_reranker(settings.model_copy(update={"rerank_fusion": "rank"})).search_weight == DEFAULT_SEARCH_WEIGHT
    # The setting, when given, wins (0 included: the model alone).
    assert build_reranker(settings.model_copy(update={"rerank_search_weight": 4.0})).search_weight == 4.0
    assert build_reranker(settings.model_copy(update={"rerank_search_weight": 0.0})).search_weight == 0.0
    # A synthetic-only model's training chose nothing.
    (model / "training.json").write_text(json.dumps({"search_weight": None, "search_fusion": None}))
    assert build_reranker(settings).search_weight == DEFAULT_SEARCH_WEIGHT


def test_auto_with_a_configured_model(model_dir: Path, tmp_path: Path) -> None:
    reranker = build_reranker(_settings(tmp_path, rerank_model=str(model_dir)))
    assert isinstance(reranker, OnnxCrossEncoderReranker)
    with pytest.raises(ModelNotFoundError):  # configured but missing: an error, not a silent "none"
        build_reranker(_settings(tmp_path, rerank_model=str(tmp_path / "nope")))


def test_explicit_cross_encoder_without_model_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(RerankerConfigError, match="LLM_TWIN_RERANK_MODEL"):
        build_reranker(_settings(tmp_path, rerank_backend="cross-encoder", rerank_model=None))


def test_directory_without_onnx_needs_sentence_transformers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = tmp_path / "plain-ce"
    plain.mkdir()
    (plain / "config.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # import fails
    with pytest.raises(RerankerConfigError, match="export the cross-encoder to ONNX"):
        build_reranker(_settings(tmp_path, rerank_model=str(plain)))

    class FakeCrossEncoder:
        def __init__(self, path: str, max_length: int) -> None:
            self.path = path

        def predict(self, pairs, batch_size: int):
            return [float(len(p)) for _q, p in pairs]  # longer passage, higher score

    monkeypatch.setitem(sys.modules, "sentence_transformers", types.SimpleNamespace(CrossEncoder=FakeCrossEncoder))
    reranker = build_reranker(_settings(tmp_path, rerank_model=str(plain), rerank_search_weight=0.0))
    assert isinstance(reranker, SentenceTransformersCrossEncoderReranker)
    ranked = reranker.run(QUERY, _chunks(), top_k=2)
    assert ranked[0].id == "c2"  # the long passage
    by_rank = build_reranker(
        _settings(tmp_path, rerank_model=str(plain), rerank_search_weight=1.0, rerank_fusion="rank")
    )
    # c0 is the search's first and the model's second: by rank, it beats c2 (the model's first, search's third)
    assert by_rank.run(QUERY, _chunks(), top_k=2)[0].id == "c0"
    by_score = build_reranker(_settings(tmp_path, rerank_model=str(plain), rerank_search_weight=1.0))
    # by score, the model's margin counts: c2 is ten times longer than the rest, so it stays first
    assert isinstance(by_score, SentenceTransformersCrossEncoderReranker) and by_score.fusion == "score"
    assert by_score.run(QUERY, _chunks(), top_k=2)[0].id == "c2"


def test_a_hub_id_goes_to_sentence_transformers_when_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub_id = "cross-encoder/ms-marco-MiniLM-L-4-v2"  # not under models_dir: the reference's production path
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # not installed: a clear error
    with pytest.raises(ModelNotFoundError, match="neither a local directory"):
        build_reranker(_settings(tmp_path, rerank_model=hub_id))

    loaded: list[str] = []

    class HubCrossEncoder:  # stands in for the download (no hub here)
        def __init__(self, name: str, max_length: int) -> None:
            loaded.append(name)

        def predict(self, pairs, batch_size: int):
            return [float(len(p)) for _q, p in pairs]

    monkeypatch.setitem(sys.modules, "sentence_transformers", types.SimpleNamespace(CrossEncoder=HubCrossEncoder))
    reranker = build_reranker(_settings(tmp_path, rerank_model=hub_id, rerank_search_weight=0.0))
    assert isinstance(reranker, SentenceTransformersCrossEncoderReranker) and hub_id in reranker.description
    assert reranker.run(QUERY, _chunks(), top_k=2)[0].id == "c2" and loaded == [hub_id]


def test_none_and_llm_backends(tmp_path: Path) -> None:
    assert isinstance(build_reranker(_settings(tmp_path, rerank_backend="none")), NoopReranker)
    with pytest.raises(RerankerConfigError, match="helper LLM"):
        build_reranker(_settings(tmp_path, rerank_backend="llm"))
    reranker = build_reranker(_settings(tmp_path, rerank_backend="llm"), helper_llm=_YesForPatterns())
    assert isinstance(reranker, LlmYesNoReranker) and reranker.name == "llm"


# --- LLM yes/no -------------------------------------------------------------------------------


class _YesForPatterns:
    """A plain LLMClient (no logprobs): answers Yes when the passage mentions patterns."""

    model_name = "fake"
    context_window = 2048

    def warm_up(self) -> None:
        return None

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def complete(self, messages, params) -> Completion:
        passage = messages[-1]["content"].split("Passage:")[1]
        return Completion(text="Yes" if "pattern" in passage.lower() else "No")

    def stream(self, messages, params):
        yield self.complete(messages, params).text


def test_llm_reranker_with_a_text_only_client() -> None:
    ranked = LlmYesNoReranker(_YesForPatterns(), top_n=20).run(QUERY, _chunks(), top_k=len(PASSAGES))
    assert [c.id for c in ranked[:3]] == ["c0", "c4", "c6"]  # "Yes" passages first, search order kept
    assert [c.score for c in ranked[:3]] == [1.0, 1.0, 1.0]
    assert all(c.score == -1.0 for c in ranked[3:])


class _LogprobsForPatterns(_YesForPatterns):
    """A client with next-token log-probabilities: the more "match" in the passage, the likelier Yes."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, ...]] = []

    def next_token_logprobs(self, messages, candidates) -> dict[str, float]:
        self.asked.append(tuple(candidates))
        p_yes = min(0.9, 0.1 + 0.2 * messages[-1]["content"].split("Passage:")[1].lower().count("match"))
        return {"Yes": float(np.log(p_yes)), " no": float(np.log(1 - p_yes)), "Maybe": -5.0}


def test_llm_reranker_prefers_log_probabilities() -> None:
    client = _LogprobsForPatterns()
    assert isinstance(client, TokenScorer)
    ranked = LlmYesNoReranker(client, top_n=20).run(QUERY, _chunks(), top_k=3)
    assert [c.id for c in ranked] == ["c4", "c0", "c6"]  # graded: two "match"es beat one; ties keep search order
    assert ranked[0].score == pytest.approx(np.log(0.5 / 0.5))
    assert ranked[1].score == pytest.approx(np.log(0.3 / 0.7))
    assert client.asked and {"Yes", "No", " yes", " no"} <= set(client.asked[0])


def test_yes_no_score_from_logprobs() -> None:
    assert yes_no_score({"Yes": -0.1, "No": -2.4}) == pytest.approx(2.3)
    combined = yes_no_score({"Yes": np.log(0.3), " yes": np.log(0.2), "No": np.log(0.5)})
    assert combined == pytest.approx(0.0, abs=1e-9)  # variants of one answer are summed
    assert yes_no_score({"Maybe": -0.1}) == 0.0
    assert yes_no_score({"No": -0.01}) < -20


def test_parse_openai_logprobs() -> None:
    body = {
        "choices": [
            {
                "logprobs": {
                    "content": [
                        {
                            "token": "Yes",
                            "logprob": -0.2,
                            "top_logprobs": [{"token": "Yes", "logprob": -0.2}, {"token": "No", "logprob": -1.8}],
                        }
                    ]
                },
            }
        ]
    }
    assert yes_no_score(parse_openai_logprobs(body)) == pytest.approx(1.6)


@pytest.mark.slow
def test_llm_reranker_with_local_gguf(tmp_path: Path) -> None:
    llama_cpp = pytest.importorskip("llm_twin.llm.llama_cpp")
    try:
        rerank_client = llama_cpp.LlamaCppClient("smollm2-135m-instruct", models_dir=tmp_path, n_ctx=2048, n_threads=2)
        rerank_client.warm_up()
    except Exception as error:
        pytest.skip(f"SmolLM2 GGUF not usable here: {error}")
    reranker = LlmYesNoReranker(rerank_client, top_n=3)
    ranked = reranker.run(QUERY, _chunks(), top_k=3)
    assert isinstance(rerank_client, TokenScorer)  # scored from log-probabilities, not the text fallback
    assert reranker._scorer is not None and reranker._scorer.__qualname__.startswith("_logprob_scorer")
    assert len(ranked) == 3
    assert all(np.isfinite(c.score) and c.metadata["rerank_score"] == c.score for c in ranked)
    assert [c.score for c in ranked] == sorted((c.score for c in ranked), reverse=True)
    assert len({c.score for c in ranked}) > 1  # real log-probabilities, not the +-1 text fallback


def _sentence_chunk(index: int, content: str, title: str | None = None) -> EmbeddedChunk:
    return EmbeddedChunk(
        id=f"s{index}",
        collection="articles",
        content_type="article",
        document_id=f"d{index}",
        chunk_index=0,
        content=content,
        author_ids=["a"],
        author_full_name="A",
        title=title,
        score=1.0 / (index + 1),
    )


def test_sentence_embedding_reranker_fuses_the_best_sentence_with_the_search_rank() -> None:
    from llm_twin.embedding.onnx_embedder import OnnxSentenceEmbedder
    from llm_twin.retrieval.rerankers.sentence_embedding import SentenceEmbeddingReranker

    chunks = [
        _sentence_chunk(0, "Fix typo. Update the header."),  # a commit that ranked first on a shared word
        _sentence_chunk(
            1,
            "The release process moves to a yearly cadence. Pattern matching adds the match "
            "statement, which compares a subject against case patterns.",
        ),
        _sentence_chunk(2, "Packaging wheels with pip and setuptools is covered elsewhere."),
    ]
    reranker = SentenceEmbeddingReranker(OnnxSentenceEmbedder(), top_n=3, relative_floor=0.0)
    ranked = reranker.run("How does the match statement compare a subject against patterns?", chunks, top_k=3)
    assert ranked[0].id == "s1", "its best sentence answers, though its chunk ranked second"
    assert ranked[0].metadata["search_score"] == chunks[1].score and "best_sentence_cosine" in ranked[0].metadata
    assert chunks[1].metadata == {}, "input chunks are not mutated"

    strict = SentenceEmbeddingReranker(OnnxSentenceEmbedder(), top_n=2, relative_floor=0.8)
    kept = strict.run("How does the match statement compare a subject against patterns?", chunks, top_k=3)
    assert [c.id for c in kept] == ["s1"], "weak candidates and the unscored tail are left out"


def test_auto_uses_the_retrieval_embedder_when_no_cross_encoder_is_found(tmp_path: Path) -> None:
    from llm_twin.embedding.onnx_embedder import OnnxSentenceEmbedder

    reranker = build_reranker(
        _settings(tmp_path, rerank_backend="auto", rerank_model=None), embedder=OnnxSentenceEmbedder()
    )
    assert reranker.name == "sentence-embedding" and "best sentence" in reranker.description
