"""Retrieval metrics against brute force: ties (both rules), several correct items, chunking, DSL."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from vop.eval.metrics import (
    chunked_ranks,
    dsl_column_logsumexp,
    dsl_rescorer,
    dsl_similarity,
    ranks_from_scores,
    retrieval_metrics,
)


def brute_force_rank(row: np.ndarray, correct: set[int], tie: str) -> int:
    """Sort the row with the tie rule built into the sort key; first correct position, 1-based."""
    is_correct = np.array([j in correct for j in range(len(row))])
    # lexsort: last key is primary. Pessimistic: among equal scores incorrect items come first.
    secondary = is_correct if tie == "pessimistic" else ~is_correct
    order = np.lexsort((secondary, -row))
    return int(np.flatnonzero(is_correct[order])[0]) + 1


def random_case(seed: int, q: int = 40, n: int = 30, levels: int = 4, max_pos: int = 3):
    """Scores from a few levels only, so most rows have deliberate ties; 1..max_pos correct items."""
    rng = np.random.default_rng(seed)
    sim = rng.integers(0, levels, size=(q, n)).astype(np.float32)
    positives = [rng.choice(n, size=rng.integers(1, max_pos + 1), replace=False) for _ in range(q)]
    return sim, positives


@pytest.mark.parametrize("tie", ["pessimistic", "optimistic"])
@pytest.mark.parametrize("seed", range(5))
def test_ranks_match_brute_force_with_ties(seed, tie):
    sim, positives = random_case(seed)
    expected = [brute_force_rank(sim[i], set(p.tolist()), tie) for i, p in enumerate(positives)]
    assert ranks_from_scores(sim, positives, tie).tolist() == expected


def test_tie_rules_are_the_extremes_over_all_orderings():
    """Pessimistic = worst rank over every tie-breaking order, optimistic = best."""
    row = np.array([2.0, 1.0, 2.0, 2.0, 0.0])
    correct = {2, 3}
    ranks = []
    for perm in itertools.permutations(range(5)):
        order = sorted(range(5), key=lambda j: (-row[j], perm[j]))  # perm breaks ties
        ranks.append(min(order.index(j) for j in correct) + 1)
    assert ranks_from_scores(row[None], [list(correct)], "pessimistic")[0] == max(ranks) == 2
    assert ranks_from_scores(row[None], [list(correct)], "optimistic")[0] == min(ranks) == 1


def test_constant_scores_get_no_credit_pessimistically():
    sim = np.zeros((10, 10), dtype=np.float32)
    m = retrieval_metrics(sim, list(range(10)))
    assert m["R@1"] == 0.0 and m["R@5"] == 0.0 and m["MdR"] == 10.0
    assert retrieval_metrics(sim, list(range(10)), tie="optimistic")["R@1"] == 100.0


def test_metric_values_hand_checked():
    # query 0: correct item 0 is top -> rank 1; query 1: correct 2 is third -> rank 3;
    # query 2: correct items {0, 1}; best is item 1 with 0.5, one item (2) above -> rank 2
    sim = np.array([[0.9, 0.1, 0.2], [0.9, 0.8, 0.7], [0.1, 0.5, 0.6]])
    m = retrieval_metrics(sim, [[0], [2], [0, 1]])
    assert m["R@1"] == pytest.approx(100 / 3) and m["R@5"] == 100.0
    assert m["MdR"] == 2.0 and m["MnR"] == 2.0 and m["queries"] == 3


def test_identity_is_perfect_and_errors_are_clear():
    assert retrieval_metrics(np.eye(12), list(range(12)))["R@1"] == 100.0
    with pytest.raises(ValueError, match="tie rule"):
        ranks_from_scores(np.eye(3), [0, 1, 2], tie="random")
    with pytest.raises(ValueError, match="NaN"):
        ranks_from_scores(np.full((2, 2), np.nan), [0, 1])
    with pytest.raises(ValueError, match="no correct item"):
        ranks_from_scores(np.eye(2), [[0], []])
    with pytest.raises(ValueError, match="outside"):
        ranks_from_scores(np.eye(2), [0, 5])


def integer_embeddings(seed: int, q: int, n: int, dim: int = 6):
    """Small-integer embeddings: every dot product is exact in float32 (and ties are common),
    so chunked and unchunked scores are bit-identical whatever the matmul blocking."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-2, 3, (q, dim), generator=g).float(), torch.randint(-2, 3, (n, dim), generator=g).float()


@pytest.mark.parametrize("tie", ["pessimistic", "optimistic"])
@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_chunked_equals_unchunked(chunk, tie):
    queries, items = integer_embeddings(0, 53, 41)
    rng = np.random.default_rng(1)
    positives = [rng.choice(41, size=rng.integers(1, 4), replace=False) for _ in range(53)]
    full = ranks_from_scores(queries @ items.T, positives, tie)
    assert chunked_ranks(queries, items, positives, tie, chunk=chunk).tolist() == full.tolist()


def test_chunked_never_builds_the_full_matrix(monkeypatch):
    """Every similarity block that reaches the rank computation has at most ``chunk`` rows."""
    from vop.eval import metrics

    seen = []
    real = metrics.ranks_from_scores

    def spy(sim, positives, tie="pessimistic"):
        seen.append(tuple(sim.shape))
        return real(sim, positives, tie)

    monkeypatch.setattr(metrics, "ranks_from_scores", spy)
    queries, items = integer_embeddings(3, 100, 80)
    metrics.chunked_ranks(queries, items, list(range(80)) + list(range(20)), chunk=16)
    assert max(r for r, _ in seen) <= 16 and sum(r for r, _ in seen) == 100


@pytest.mark.parametrize("chunk", [3, 50])
def test_chunked_dsl_equals_full_dsl(chunk):
    g = torch.Generator().manual_seed(0)
    queries = torch.nn.functional.normalize(torch.randn(37, 8, generator=g), dim=-1)
    items = torch.nn.functional.normalize(torch.randn(29, 8, generator=g), dim=-1)
    positives = [i % 29 for i in range(37)]
    lse = dsl_column_logsumexp(queries, items, temperature=100.0, chunk=chunk)
    reference = dsl_similarity(queries @ items.T, temperature=100.0)
    rescore = dsl_rescorer(lse, temperature=100.0)
    rebuilt = torch.cat([rescore((queries[s:s + chunk] @ items.T), s) for s in range(0, 37, chunk)])
    torch.testing.assert_close(rebuilt, reference, rtol=1e-4, atol=1e-6)
    got = chunked_ranks(queries, items, positives, chunk=chunk, rescore=rescore)
    assert got.tolist() == ranks_from_scores(reference, positives).tolist()
