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

The rank of every query only needs one row of similarities, so :func:`chunked_ranks` computes
them query chunk by query chunk and never holds the full ``[Q, N]`` matrix.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

TIE_RULES = ("pessimistic", "optimistic")
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


def ranks_from_scores(
    sim: torch.Tensor | np.ndarray,
    positives: Sequence[Sequence[int]] | Sequence[int],
    tie: str = "pessimistic",
) -> np.ndarray:
    """1-based rank of the best correct item of each row of ``sim`` ``[Q, N]`` (see module doc)."""
    if tie not in TIE_RULES:
        raise ValueError(f"unknown tie rule {tie!r}; choose one of {TIE_RULES}")
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
    if tie == "pessimistic":
        at_or_above = (sim >= best[:, None]).sum(dim=1)                    # includes correct items tied at best
        correct_at_best = torch.zeros(len(pos), dtype=torch.long).scatter_add(
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
    """R@1/5/10, MdR, MnR of the queries (rows) of ``sim`` ``[Q, N]`` against ``positives``."""
    return summarize_ranks(ranks_from_scores(sim, positives, tie))


# --------------------------------------------------------------------------- chunked

ScoreFn = Callable[[torch.Tensor, int], torch.Tensor]


def default_chunk(num_items: int, budget_bytes: int = 64 * 2**20) -> int:
    """Queries per chunk so that one ``[chunk, N]`` float32 block stays within ``budget_bytes``.

    Ranking a block needs about twice the block (its scores and one comparison), so the
    default 64 MB budget keeps the evaluation's extra memory near 150 MB at any N."""
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
