"""Why the pq index needs ~6000 candidates on 1M random vectors: what limits the first stage.

For the fast-scan PQ that ``vop index`` builds (128 sub-quantisers x 4 bits = 64 B per vector)
and a smaller code (64 x 4 bits = 32 B), this measures, for k' candidates per query:

* candidate recall: the share of the exact top-10 among the k' best approximate scores (the
  fp16 re-rank cannot find what is not among them, so this bounds the index's recall@10);
* the same for plain ``IndexPQ`` with the same codebooks and float look-up tables (fast scan
  rounds its tables to 8 bits: does that cost recall?);
* single-query scan time (1 thread), to see how much of it is k' and how much the pass itself.

    python benchmarks/search_pq_variants.py [--n 1000000] [--queries 200]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search import exact_topk, p50_ms, recall_at_k, unit_vectors, write_result

RESULTS = Path(__file__).resolve().parent / "results" / "search_pq_variants.json"
CANDIDATES = (500, 1000, 2000, 4000, 6000, 10000)


def main() -> None:
    import faiss

    from vop.index.vectors import PQ_SCAN_IMPLEM, PQ_TRAIN

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--latency-queries", type=int, default=40)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    faiss.omp_set_num_threads(1)

    x = unit_vectors(args.n, args.dim, seed=0)
    queries = unit_vectors(args.queries, args.dim, seed=1)
    timing = unit_vectors(args.latency_queries, args.dim, seed=2)
    truth = exact_topk(x, queries)
    rng = np.random.default_rng(0)
    train = x[np.sort(rng.choice(args.n, min(PQ_TRAIN, args.n), replace=False))]
    rows = []
    for m in (args.dim // 4, args.dim // 8):
        scan = faiss.index_factory(args.dim, f"PQ{m}x4fs", faiss.METRIC_INNER_PRODUCT)
        t = time.perf_counter()
        scan.train(train)
        scan.add(x)
        build_s = time.perf_counter() - t
        scan.implem = PQ_SCAN_IMPLEM
        fast = scan.search(queries, max(CANDIDATES))[1]
        floats = None
        if m == args.dim // 4:  # the code vop uses: also with float tables (slow, recall only)
            plain = faiss.IndexPQ(args.dim, m, 4, faiss.METRIC_INNER_PRODUCT)
            plain.pq = scan.pq
            plain.is_trained = True
            plain.add(x)
            floats = plain.search(queries, max(CANDIDATES))[1]
            del plain
        for k in CANDIDATES:
            row = {
                "code": f"PQ{m}x4fs",
                "bytes_per_vector": m // 2,
                "build_s": build_s,
                "candidates": k,
                "candidate_recall_fast_scan": recall_at_k(fast[:, :k], truth),
                "candidate_recall_float_tables": None if floats is None else recall_at_k(floats[:, :k], truth),
                "scan_p50_ms": p50_ms(lambda q, k=k, index=scan: index.search(q[None], k), timing),
            }
            rows.append(row)
            print(
                f"{row['code']:<10} k'={k:>5}: candidate recall {row['candidate_recall_fast_scan']:.3f}"
                + (
                    f" (float tables {row['candidate_recall_float_tables']:.3f})"
                    if floats is not None
                    else ""
                )
                + f"  scan {row['scan_p50_ms']:.2f} ms",
                flush=True,
            )
        del scan
    result = {
        "benchmark": "search_pq_variants",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "n": args.n,
        "dim": args.dim,
        "queries": args.queries,
        "threads": 1,
        "loadavg_after": os.getloadavg(),
        "faiss": faiss.__version__,
        "rows": rows,
    }
    write_result(args.out, result)


if __name__ == "__main__":
    main()
