"""Retrieval metrics as pure functions of similarities and ground truth.

Ground truth is given per query as the indices of its correct items (``positives[q]``), so a
query may have several correct items (MSVD video-to-text: every caption of the video is right).
A query's rank is the best (smallest) rank among its correct items, 1-based.

Tie rule (CLIP4Clip issue #80 is what happens without one): a query's rank is decided by the
score ``s*`` of its best correct item.

* ``pessimistic`` (default): every *incorrect* item scoring ``>= s*`` is ranked before it,
  ``rank = 1 + #{incorrect j : s_j >= s*}``. This is the worst rank any tie-breaking order can
  give, so a model that outputs constant scores gets no credit.
* ``optimistic``: only strictly higher scores count, ``rank = 1 + #{j : s_j > s*}`` (the best
  rank any tie-breaking order can give).

Other correct items never push the best one down, whatever the rule.

* ``expected`` (:func:`expected_metrics`, also ``retrieval_metrics(..., tie="expected")``): the
  mean over every tie-breaking order, as if ties were broken at random. With ``a`` incorrect
  items strictly ahead, ``t`` incorrect items tied with ``s*`` and ``c`` correct items at ``s*``,
  the first correct one lands on average at ``a + (t + c + 1) / (c + 1)`` (one correct item tied
  with ``n - 1`` others: ``a + (n + 1) / 2``), and R@K is the probability that it lands within
  the first K. Use it where exact ties are a property of the model rather than of its failure,
  e.g. an order-free video model scoring a clip and its time-reversed copy identically: the
  pessimistic rule turns every such query into a miss, the expected rule into half a hit.

The rank of every query only needs one row of similarities, so :func:`chunked_ranks` computes
them query chunk by query chunk and never holds the full ``[Q, N]`` matrix.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

TIE_RULES = ("pessimistic", "optimistic")  # rules that give each query one integer rank
EXPECTED = "expected"  # the mean over tie-breaking orders: a fractional rank, R@K a probability
RECALL_AT = (1, 5, 10)


def as_positives(positives: Sequence[Sequence[int]] | Sequence[int] | np.ndarray) -> list[np.ndarray]:
    """Normalise ground truth to one int array per query; a flat int sequence means one item each."""
    out = []
    for q, p in enumerate(positives):
        arr = np.atleast_1d(np.asarray(p, dtype=np.int64))
        if arr.size == 0:
            raise ValueError(f"query {q} has no correct item; every query needs at least one")
        out.append(arr)
    return out


def _best_correct(sim, positives):
    """``sim`` as a float tensor ``[Q, N]`` (checked against ``positives``), the row and column of
    every correct item ``[P]``, their scores ``[P]`` and each query's best correct score ``[Q]``."""
    sim = torch.as_tensor(sim)
    if not sim.is_floating_point():
        sim = sim.float()
    pos = as_positives(positives)
    if sim.ndim != 2 or sim.shape[0] != len(pos):
        raise ValueError(f"similarities {tuple(sim.shape)} do not match {len(pos)} queries")
    if torch.isnan(sim).any():
        raise ValueError("similarities contain NaN; ranks would be meaningless")
    num_items = sim.shape[1]
    rows = torch.repeat_interleave(torch.arange(len(pos)), torch.tensor([len(p) for p in pos]))
    cols = torch.from_numpy(np.concatenate(pos))
    if cols.numel() and (cols.min() < 0 or cols.max() >= num_items):
        raise ValueError(f"a correct item index is outside [0, {num_items})")
    # only the correct items' scores are gathered: no [Q, N] mask or masked copy, so a block
    # costs its scores plus one boolean comparison
    pos_scores = sim[rows, cols]                                           # [P]
    best = torch.full((len(pos),), float("-inf"), dtype=sim.dtype)
    best = best.scatter_reduce(0, rows, pos_scores, reduce="amax")         # [Q]
    return sim, rows, cols, pos_scores, best


def ranks_from_scores(
    sim: torch.Tensor | np.ndarray,
    positives: Sequence[Sequence[int]] | Sequence[int],
    tie: str = "pessimistic",
) -> np.ndarray:
    """1-based rank of the best correct item of each row of ``sim`` ``[Q, N]`` (see module doc)."""
    if tie not in TIE_RULES:
        raise ValueError(f"unknown tie rule {tie!r}; choose one of {TIE_RULES}")
    sim, rows, _, pos_scores, best = _best_correct(sim, positives)
    if tie == "pessimistic":
        at_or_above = (sim >= best[:, None]).sum(dim=1)                    # includes correct items tied at best
        correct_at_best = torch.zeros(len(best), dtype=torch.long).scatter_add(
            0, rows, (pos_scores >= best[rows]).long())
        ahead = at_or_above - correct_at_best
    else:
        ahead = (sim > best[:, None]).sum(dim=1)
    return (ahead + 1).numpy().astype(np.int64)


def summarize_ranks(ranks: np.ndarray) -> dict[str, float]:
    """R@1/5/10 in percent, median and mean rank, and the number of queries."""
    ranks = np.asarray(ranks)
    out = {f"R@{k}": float(100.0 * np.mean(ranks <= k)) for k in RECALL_AT}
    out["MdR"] = float(np.median(ranks))
    out["MnR"] = float(np.mean(ranks))
    out["queries"] = int(ranks.size)
    return out


def retrieval_metrics(
    sim: torch.Tensor | np.ndarray,
    positives: Sequence[Sequence[int]] | Sequence[int],
    tie: str = "pessimistic",
) -> dict[str, float]:
    """R@1/5/10, MdR, MnR of the queries (rows) of ``sim`` ``[Q, N]`` against ``positives``
    (``tie``: one of :data:`TIE_RULES`, or ``"expected"`` for :func:`expected_metrics`)."""
    if tie == EXPECTED:
        return expected_metrics(sim, positives)
    return summarize_ranks(ranks_from_scores(sim, positives, tie))


# --------------------------------------------------------------------------- expected-value ties


def tie_counts(
    sim: torch.Tensor | np.ndarray,
    positives: Sequence[Sequence[int]] | Sequence[int],
    tol: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per query ``(ahead, tied, correct)``: incorrect items scoring above the best correct score
    ``s*``, incorrect items tied with it, and correct items tied at it (at least 1).

    ``tol``: scores within ``tol`` of ``s*`` count as tied with it (0: exact ties only); use it
    where equal scores come out of the arithmetic a few ulps apart.
    """
    if tol < 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    sim, rows, cols, _, best = _best_correct(sim, positives)
    is_correct = torch.zeros(sim.shape, dtype=torch.bool)
    is_correct[rows, cols] = True                                          # [Q, N]
    above = sim > best[:, None] + tol                                      # [Q, N]
    level = (sim - best[:, None]).abs() <= tol                             # [Q, N]
    ahead = (above & ~is_correct).sum(dim=1)
    tied = (level & ~is_correct).sum(dim=1)
    correct = (level & is_correct).sum(dim=1)
    return ahead.numpy().astype(np.int64), tied.numpy().astype(np.int64), correct.numpy().astype(np.int64)


def expected_ranks(ahead: np.ndarray, tied: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """Mean rank of the first correct item over every order of the tied items (module doc)."""
    ahead, tied, correct = (np.asarray(x, dtype=np.float64) for x in (ahead, tied, correct))
    return ahead + (tied + correct + 1) / (correct + 1)


def expected_hit(k: int, ahead: np.ndarray, tied: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """Probability that the first correct item ranks within the first ``k`` under a random order
    of the tied items: 1 minus the chance that the ``k - ahead`` slots left all go to incorrect ones."""
    out = np.zeros(len(ahead), dtype=np.float64)
    for q, (a, t, c) in enumerate(zip(np.asarray(ahead), np.asarray(tied), np.asarray(correct))):
        slots = k - int(a)
        if slots <= 0:
            continue
        if slots > t:
            out[q] = 1.0
            continue
        miss = 1.0  # C(t, slots) / C(t + c, slots), as a product that never overflows
        for i in range(slots):
            miss *= (t - i) / (t + c - i)
        out[q] = 1.0 - miss
    return out


def expected_metrics(
    sim: torch.Tensor | np.ndarray,
    positives: Sequence[Sequence[int]] | Sequence[int],
    tol: float = 0.0,
) -> dict[str, float]:
    """R@1/5/10 (expected, in percent), MnR (expected) and MdR (the median of the expected ranks)
    under random tie-breaking; ``tol`` as in :func:`tie_counts`."""
    ahead, tied, correct = tie_counts(sim, positives, tol)
    ranks = expected_ranks(ahead, tied, correct)
    out = {f"R@{k}": float(100.0 * np.mean(expected_hit(k, ahead, tied, correct))) for k in RECALL_AT}
    out["MdR"] = float(np.median(ranks))
    out["MnR"] = float(np.mean(ranks))
    out["queries"] = int(ranks.size)
    return out


# --------------------------------------------------------------------------- chunked

ScoreFn = Callable[[torch.Tensor, int], torch.Tensor]


def default_chunk(num_items: int, budget_bytes: int = 64 * 2**20) -> int:
    """Queries per chunk so that one ``[chunk, N]`` float32 block stays within ``budget_bytes``.

    Ranking a block needs about twice the block (its scores and one comparison), so the
    evaluation's extra memory is bounded by the budget, not by N (measured: docs/training.md)."""
    return max(1, budget_bytes // (4 * max(num_items, 1)))


def chunked_ranks(
    queries: torch.Tensor,
    items: torch.Tensor,
    positives: Sequence[Sequence[int]] | Sequence[int],
    tie: str = "pessimistic",
    chunk: int | None = None,
    rescore: ScoreFn | None = None,
) -> np.ndarray:
    """Ranks of ``queries @ items.T`` (``[Q, E] x [N, E]``) computed ``chunk`` queries at a time.

    ``rescore(block, start)`` may transform each ``[chunk, N]`` similarity block (e.g. DSL,
    :func:`dsl_rescorer`); ``start`` is the first query index of the block.
    """
    pos = as_positives(positives)
    if queries.shape[0] != len(pos):
        raise ValueError(f"{queries.shape[0]} query embeddings but {len(pos)} ground-truth entries")
    chunk = chunk or default_chunk(items.shape[0])
    out = []
    for start in range(0, queries.shape[0], chunk):
        block = queries[start:start + chunk].float() @ items.float().T  # [c, N]
        if rescore is not None:
            block = rescore(block, start)
        out.append(ranks_from_scores(block, pos[start:start + chunk], tie))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


# --------------------------------------------------------------------------- DSL


def dsl_column_logsumexp(
    queries: torch.Tensor, items: torch.Tensor, temperature: float = 100.0, chunk: int | None = None
) -> torch.Tensor:
    """``log sum_q exp(t * s_qj)`` for every item ``j`` ``[N]``, streamed over query chunks.

    Dual softmax normalises each item's column over *all* queries, so these statistics need
    one full pass before any rank can be computed; a running log-sum-exp keeps it chunked.
    """
    chunk = chunk or default_chunk(items.shape[0])
    acc = torch.full((items.shape[0],), float("-inf"))
    for start in range(0, queries.shape[0], chunk):
        block = queries[start:start + chunk].float() @ items.float().T  # [c, N]
        acc = torch.logaddexp(acc, torch.logsumexp(temperature * block, dim=0))
    return acc


def dsl_rescorer(column_lse: torch.Tensor, temperature: float = 100.0) -> ScoreFn:
    """Dual-softmax re-scoring ``s_qj * softmax_q(t * s)_qj`` (CAMoE) for :func:`chunked_ranks`.

    DSL uses the statistics of the whole test query set, which a deployed system does not have;
    that is why its numbers are always reported apart from the plain ones.
    """

    def rescore(block: torch.Tensor, start: int) -> torch.Tensor:
        return block * torch.exp(temperature * block - column_lse[None, :])

    return rescore


def dsl_similarity(sim: torch.Tensor, temperature: float = 100.0) -> torch.Tensor:
    """Unchunked DSL of a full ``[Q, N]`` matrix: the reference the chunked path is tested against."""
    sim = torch.as_tensor(sim).float()
    return sim * torch.softmax(temperature * sim, dim=0)


def _rsum(metrics: dict) -> float:
    return metrics["R@1"] + metrics["R@5"] + metrics["R@10"]


# Validation scores that can select a training run's adapter (``eval.select``). t2v R@1 is the
# paper's; the R@1+R@5+R@10 sums are steadier where R@1 hangs on a few queries (e.g. an order-free
# method on a split whose clips come with their time-reversed partner: R@1 is then a coin flip).
SELECT_SCORES = {
    "t2v_R@1": lambda res: res["t2v"]["R@1"],
    "t2v_rsum": lambda res: _rsum(res["t2v"]),
    "rsum": lambda res: _rsum(res["t2v"]) + _rsum(res["v2t"]),
}
