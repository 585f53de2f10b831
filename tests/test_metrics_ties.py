"""The expected-value tie rule against brute force: every tie-breaking order of small rows, averaged."""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest

from vop.eval.metrics import (
    expected_hit,
    expected_metrics,
    expected_ranks,
    ranks_from_scores,
    retrieval_metrics,
    tie_counts,
)


def all_orders(row: np.ndarray, correct: set[int]) -> list[int]:
    """The first correct item's rank under every tie-breaking order (a permutation breaks ties)."""
    n = len(row)
    ranks = []
    for perm in itertools.permutations(range(n)):
        order = sorted(range(n), key=lambda j: (-row[j], perm[j]))
        ranks.append(min(order.index(j) for j in correct) + 1)
    return ranks


def small_case(seed: int, q: int = 12, n: int = 6, levels: int = 3, max_pos: int = 3):
    """Scores from a few levels, so most rows tie; 1..max_pos correct items; n small enough for n!."""
    rng = np.random.default_rng(seed)
    sim = rng.integers(0, levels, size=(q, n)).astype(np.float32)
    positives = [rng.choice(n, size=rng.integers(1, max_pos + 1), replace=False) for _ in range(q)]
    return sim, positives


@pytest.mark.parametrize("seed", range(4))
def test_expected_rank_and_recall_equal_the_mean_over_every_tie_breaking_order(seed):
    sim, positives = small_case(seed)
    counts = tie_counts(sim, positives)
    ranks = expected_ranks(*counts)
    for i, p in enumerate(positives):
        brute = all_orders(sim[i], set(p.tolist()))
        assert ranks[i] == pytest.approx(float(Fraction(sum(brute), len(brute))), abs=1e-12)
        for k in (1, 2, 3, 5):
            hit = Fraction(sum(r <= k for r in brute), len(brute))
            assert expected_hit(k, *counts)[i] == pytest.approx(float(hit), abs=1e-12), (i, k)
    m = expected_metrics(sim, positives)
    brute_all = [all_orders(sim[i], set(p.tolist())) for i, p in enumerate(positives)]
    for k in (1, 5):
        assert m[f"R@{k}"] == pytest.approx(100 * np.mean([np.mean([r <= k for r in b]) for b in brute_all]))
    assert m["MnR"] == pytest.approx(np.mean([np.mean(b) for b in brute_all]))
    assert m["queries"] == len(positives) and retrieval_metrics(sim, positives, tie="expected") == m


def test_one_correct_item_tied_with_n_minus_1_others_ranks_ahead_plus_half_of_n_plus_1():
    row = np.array([[5.0, 3.0, 3.0, 3.0, 3.0, 1.0]])  # 1 ahead; the correct item 2 tied with 3 others
    ahead, tied, correct = tie_counts(row, [2])
    assert (ahead[0], tied[0], correct[0]) == (1, 3, 1)
    assert expected_ranks(ahead, tied, correct)[0] == 1 + (4 + 1) / 2
    assert expected_hit(1, ahead, tied, correct)[0] == 0.0
    assert expected_hit(2, ahead, tied, correct)[0] == pytest.approx(1 / 4)
    assert expected_hit(5, ahead, tied, correct)[0] == 1.0


def test_a_clip_tied_with_its_reverse_counts_half_where_pessimistic_counts_a_miss():
    """What an order-free video model does to a clip and its time-reversed partner."""
    sim = np.array([[0.9, 0.9, 0.1], [0.9, 0.9, 0.1]])
    assert retrieval_metrics(sim, [0, 1])["R@1"] == 0.0  # pessimistic
    assert retrieval_metrics(sim, [0, 1], tie="optimistic")["R@1"] == 100.0
    m = expected_metrics(sim, [0, 1])
    assert m["R@1"] == 50.0 and m["MnR"] == 1.5 and m["R@5"] == 100.0


def test_expected_lies_between_the_pessimistic_and_optimistic_ranks():
    sim, positives = small_case(7, q=60, n=20, levels=4)
    exp = expected_ranks(*tie_counts(sim, positives))
    assert (ranks_from_scores(sim, positives, "optimistic") <= exp + 1e-12).all()
    assert (exp <= ranks_from_scores(sim, positives, "pessimistic") + 1e-12).all()
    no_ties = np.random.default_rng(0).random((30, 25))  # distinct scores: every rule agrees
    pos = list(range(25)) + [0, 1, 2, 3, 4]
    assert expected_ranks(*tie_counts(no_ties, pos)).tolist() == ranks_from_scores(no_ties, pos).tolist()


def test_tolerance_merges_scores_a_rounding_apart_and_nothing_else():
    row = np.array([[0.5, 0.5 + 1e-8, 0.2, 0.5 + 1e-3]])
    assert tie_counts(row, [0])[:2] == (np.array([2]), np.array([0]))  # exact: 1e-8 above is ahead
    ahead, tied, correct = tie_counts(row, [0], tol=1e-6)
    assert (ahead[0], tied[0], correct[0]) == (1, 1, 1)
    with pytest.raises(ValueError, match="tol"):
        tie_counts(row, [0], tol=-1.0)
    with pytest.raises(ValueError, match="outside"):
        tie_counts(row, [7])
