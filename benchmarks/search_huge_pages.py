"""Do huge pages for the pq re-rank rows make queries faster? An A/B in one process.

Two copies of the same pq index over N random unit vectors (the generator of ``search.py``), one
opened with ``huge_pages=True`` (the fp16 re-rank rows on 2 MiB transparent huge pages, what
``vop serve`` asks for), one without, searched in alternating blocks of queries (the order flips
every round) next to NumPy brute force. Reports the median of the per-round p50 latencies.

    python benchmarks/search_huge_pages.py [--threads 1] [--n 1000000] [--rounds 6]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
if __name__ == "__main__":  # BLAS reads these once, when NumPy loads it
    from blas_threads import pin_blas_threads

    pin_blas_threads(sys.argv[1:])

import numpy as np
from search import K, brute_force, p50_ms, unit_vectors, write_result


def main() -> None:
    import faiss

    from vop.index.vectors import VectorIndex

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--k-factor", type=int, default=600)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--queries", type=int, default=50, help="queries per block")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    out = args.out or Path(__file__).parent / "results" / f"search_huge_pages_{args.threads}thread.json"
    faiss.omp_set_num_threads(args.threads)

    x = unit_vectors(args.n, args.dim, seed=0)
    queries = unit_vectors(args.queries, args.dim, seed=2)
    ids = np.arange(args.n)
    indexes = {
        "plain": VectorIndex.build(ids, x, kind="pq", threads=args.threads),
        "huge_pages": VectorIndex.build(ids, x, kind="pq", threads=args.threads, huge_pages=True),
    }
    for vi in indexes.values():
        vi.set_params(k_factor=args.k_factor)
    runs = {"numpy": lambda q: brute_force(x, q)}
    runs.update({name: (lambda q, vi=vi: vi.search(q[None], K)) for name, vi in indexes.items()})
    p50s: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(args.rounds):
        for name in list(runs) if r % 2 == 0 else list(runs)[::-1]:
            p50s[name].append(p50_ms(runs[name], queries))
    summary = {name: float(np.median(v)) for name, v in p50s.items()}
    for name, v in p50s.items():
        print(f"{name:<10} p50 per round: {' '.join(f'{t:.2f}' for t in v)} ms; median {summary[name]:.2f} ms")
    ratio = summary["huge_pages"] / summary["plain"]
    print(f"huge pages / plain: {ratio:.2f}")
    result = {
        "benchmark": "search_huge_pages",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "n": args.n,
        "dim": args.dim,
        "threads": args.threads,
        "search_shards": indexes["plain"].shards,
        "k_factor": args.k_factor,
        "rounds": args.rounds,
        "queries_per_block": args.queries,
        "p50_ms_per_round": p50s,
        "median_p50_ms": summary,
        "huge_pages_over_plain": ratio,
        "loadavg_after": os.getloadavg(),
    }
    write_result(out, result)


if __name__ == "__main__":
    main()
