"""Would an HNSW graph beat the pq index on the search benchmark's data? A probe at 100k vectors.

FAISS ``IndexHNSWFlat`` (M = 32, efConstruction = 80, inner product) over N random unit vectors of
dim 512 (the same generator as ``search.py``), built with 2 threads; then single-query latency
(1 thread) and recall@10 over a range of efSearch, against NumPy brute force on the same N.
Uniformly random high-dimensional vectors have no neighbourhood structure for a graph to follow,
so this checks how far greedy graph search gets before it costs as much as a full scan.

    python benchmarks/search_hnsw_probe.py [--n 100000] [--ef 64 128 256 512 1024 2048]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


sys.path.insert(0, str(Path(__file__).resolve().parent))
from search import brute_force, exact_topk, p50_ms, recall_at_k, unit_vectors, write_result

RESULTS = Path(__file__).resolve().parent / "results" / "search_hnsw_probe.json"


def main() -> None:
    import faiss

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--ef", type=int, nargs="+", default=[64, 128, 256, 512, 1024, 2048])
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--latency-queries", type=int, default=50)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()

    x = unit_vectors(args.n, args.dim, seed=0)
    queries = unit_vectors(args.queries, args.dim, seed=1)
    timing = unit_vectors(args.latency_queries, args.dim, seed=2)
    truth = exact_topk(x, queries)
    index = faiss.IndexHNSWFlat(args.dim, 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 80
    faiss.omp_set_num_threads(2)
    t = time.perf_counter()
    index.add(x)
    build_s = time.perf_counter() - t
    faiss.omp_set_num_threads(1)
    numpy_ms = p50_ms(lambda q: brute_force(x, q), timing)
    print(f"built HNSW32 over {args.n:,} vectors in {build_s:.1f}s (2 threads); NumPy brute force {numpy_ms:.2f} ms")
    rows = []
    for ef in args.ef:
        index.hnsw.efSearch = ef
        row = {
            "ef_search": ef,
            "recall_at_10": recall_at_k(index.search(queries, 10)[1], truth),
            "p50_ms": p50_ms(lambda q: index.search(q[None], 10), timing),
        }
        row["speedup_vs_numpy_p50"] = numpy_ms / row["p50_ms"]
        rows.append(row)
        print(f"  efSearch {ef:>5}: recall@10 {row['recall_at_10']:.3f}  p50 {row['p50_ms']:.2f} ms  "
              f"{row['speedup_vs_numpy_p50']:.1f}x NumPy", flush=True)
    result = {
        "benchmark": "search_hnsw_probe",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "n": args.n,
        "dim": args.dim,
        "index": "IndexHNSWFlat(M=32, efConstruction=80, inner product)",
        "build_s": build_s,
        "build_threads": 2,
        "search_threads": 1,
        "numpy_bruteforce_p50_ms": numpy_ms,
        "loadavg_after": os.getloadavg(),
        "faiss": faiss.__version__,
        "rows": rows,
    }
    write_result(args.out, result)


if __name__ == "__main__":
    main()
