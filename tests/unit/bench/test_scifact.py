"""BEIR metrics and the SciFact loader of ``bench.scifact`` on hand-made cases."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench.scifact import documents_in_order, evaluate, load, ndcg_at, recall_at


def test_ndcg_is_one_for_the_ideal_order_and_discounts_late_hits() -> None:
    rel = {"a": 1, "b": 1}
    assert ndcg_at(["a", "b", "x"], rel) == pytest.approx(1.0)
    # one relevant document at rank 2 of two relevant: (1/log2 3) / (1 + 1/log2 3)
    expected = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert ndcg_at(["x", "a", "y"], rel) == pytest.approx(expected)
    assert ndcg_at(["x"] * 10 + ["a"], rel) == 0.0  # beyond the cut-off
    assert ndcg_at(["a"], {}) == 0.0


def test_graded_relevance_rewards_the_higher_grade_first() -> None:
    rel = {"a": 2, "b": 1}
    assert ndcg_at(["a", "b"], rel) > ndcg_at(["b", "a"], rel)


def test_recall_counts_distinct_relevant_documents_within_k() -> None:
    rel = {"a": 1, "b": 1, "c": 0}
    assert recall_at(["a", "z", "b"], rel, k=2) == 0.5
    assert recall_at(["a", "z", "b"], rel, k=3) == 1.0
    assert recall_at(["c"], rel) == 0.0


def test_a_document_ranks_where_its_best_chunk_does() -> None:
    assert documents_in_order(["d1", "d2", "d1", "d3", "d2"]) == ["d1", "d2", "d3"]


def test_evaluate_averages_over_queries_with_qrels_only() -> None:
    qrels = {"1": {"a": 1}, "2": {"b": 1}}
    m = evaluate({"1": ["a"], "2": ["x"], "3": ["a"]}, qrels)
    assert m["queries"] == 2 and m["ndcg@10"] == pytest.approx(0.5)
    assert m["recall@100"] == pytest.approx(0.5)


def test_loader_reads_beir_layout(tmp_path: Path) -> None:
    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text(
        json.dumps({"_id": "7", "title": "Title", "text": "Body text."}) + "\n")
    (tmp_path / "queries.jsonl").write_text(json.dumps({"_id": "1", "text": "claim"}) + "\n")
    for split in ("train", "test"):
        (tmp_path / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n1\t7\t1\n")
    data = load(tmp_path)
    assert [(d.key, d.filename, d.text) for d in data.docs] == [("7", "7.txt", "Title\n\nBody text.")]
    assert data.queries == {"1": "claim"} and data.qrels["test"] == {"1": {"7": 1}}
