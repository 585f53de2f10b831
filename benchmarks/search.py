"""Search benchmark: our vector index vs exact NumPy brute force, and a load test of `vop serve`.

Part 1 (vectors): N random unit vectors (default 1,000,000 x 512, fp32 in memory, generated in
chunks). Two indexes: what ``VectorIndex.build`` picks at this size (``pq``: 4-bit fast-scan PQ +
fp16 re-rank, curve over k_factor) and ``ivf`` (fp16 codes, nlist = 4 sqrt(N), curve over nprobe).
For every latency query, NumPy brute force (``x @ q`` + top-k), FAISS exact, and every index
setting are timed back to back, so load from other processes on the shared machine hits all alike;
for ``pq`` also the fast-scan alone and the search with FAISS's own choice of scan kernel.
Recall@10 is measured on separate queries against the exact top-10 (chunked matmul). Random
uniform vectors on the sphere are the worst case for IVF (no cluster structure).

Part 2 (serve): a small index of synthetic videos encoded with a random-weight backbone, `vop serve`
started on a free loopback port, a fixed number of POST /search requests from concurrent clients
under a time limit: throughput, p50/p99 latency, errors.

    python benchmarks/search.py [--n 1000000] [--threads 1] [--out benchmarks/results/search.json]

Probes (``--probe NAME``; each answers one question on the same vectors and writes its own JSON):

* ``huge-pages``: do huge pages for the pq re-rank rows make queries faster? Two pq indexes over
  the same N vectors, one opened with ``huge_pages=True`` (what ``vop serve`` asks for), one
  without, searched in alternating blocks of ``--queries`` queries (the order flips every round)
  next to NumPy brute force; the median of the per-round p50 latencies
  (``search_huge_pages_{T}thread.json``).
* ``pq-codes``: what limits the pq index's first stage? For the fast-scan code ``vop index``
  builds (dim/4 sub-quantisers x 4 bits, 64 B per vector at dim 512) and one half its size, the
  share of the exact top-10 among the k' best approximate scores (the re-rank cannot find what is
  not among them), the same with float look-up tables (``IndexPQ``, same codebooks; fast scan
  rounds its tables to 8 bits), and the scan time alone, 1 thread (``search_pq_variants.json``).
* ``hnsw``: would a graph index do better? FAISS ``IndexHNSWFlat`` (M 32, efConstruction 80,
  built with 2 threads) over N vectors (default 100k), recall@10 and 1-thread latency over a range
  of efSearch against NumPy brute force on the same N (``search_hnsw_probe.json``).

    python benchmarks/search.py --probe huge-pages [--threads 2] [--rounds 6]
    python benchmarks/search.py --probe pq-codes
    python benchmarks/search.py --probe hnsw [--n 100000] [--ef 64 128 256 512 1024 2048]

``--threads T`` gives NumPy's BLAS, FAISS and torch T threads, and our pq index T search shards
(one thread each). The indexes are set up as ``vop serve`` opens them (``huge_pages=True``: the
fp16 re-rank rows on transparent huge pages where the kernel allows it; NumPy already asks for
huge pages for its large arrays, the 2 GB brute-force matrix included). The thread variables are put in the environment before NumPy is imported,
including ``OPENBLAS_THREAD_TIMEOUT=4`` and ``OMP_WAIT_POLICY=PASSIVE``: idle OpenBLAS and
OpenMP worker threads otherwise keep spinning for a while after each query and, with T > 1,
slow down whatever is timed next on the same cores (seen: our 2-thread query 2.6 -> 5.0 ms right
after a NumPy query; pq settings timed right after FAISS's exact search slower than later ones).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def threads_from_argv(argv: list[str], default: str = "1") -> str:
    """The value of ``--threads N`` / ``--threads=N`` in ``argv`` (``default`` without one)."""
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--threads="):
            return a.split("=", 1)[1]
    return default


def pin_blas_threads(argv: list[str]) -> None:
    """BLAS and OpenMP get ``--threads`` threads; their idle workers sleep at once
    (``OPENBLAS_THREAD_TIMEOUT=4``, ``OMP_WAIT_POLICY=PASSIVE``) instead of spinning and slowing
    whatever is timed next on the same cores. Values already in the environment win. Must run
    before NumPy is imported: BLAS reads them once, when NumPy loads it."""
    threads = threads_from_argv(argv)
    for var, value in (("OMP_NUM_THREADS", threads), ("OPENBLAS_NUM_THREADS", threads),
                       ("OPENBLAS_THREAD_TIMEOUT", "4"), ("OMP_WAIT_POLICY", "PASSIVE")):
        os.environ.setdefault(var, value)


if __name__ == "__main__":
    pin_blas_threads(sys.argv[1:])

import numpy as np  # after the thread settings

REPO = Path(__file__).resolve().parents[1]
K = 10


# --------------------------------------------------------------------------- part 1: vectors
def unit_vectors(n: int, dim: int, seed: int, chunk: int = 100_000) -> np.ndarray:
    """``[n, dim]`` float32 unit vectors, generated chunk by chunk (no float64 copy of the whole)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, chunk):
        block = rng.standard_normal((min(chunk, n - s), dim), dtype=np.float32)
        out[s : s + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def brute_force(x: np.ndarray, q: np.ndarray, k: int = K) -> np.ndarray:
    """Exact top-k ids of one query ``[dim]`` (the reference a user would write with NumPy)."""
    scores = x @ q  # [N]
    top = np.argpartition(-scores, k)[:k]
    return top[np.argsort(-scores[top])]


def exact_topk(x: np.ndarray, queries: np.ndarray, k: int = K, chunk: int = 100) -> np.ndarray:
    """Ground truth ``[Q, k]`` by chunked matmul."""
    out = np.empty((len(queries), k), dtype=np.int64)
    for s in range(0, len(queries), chunk):
        scores = queries[s : s + chunk] @ x.T  # [c, N]
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
        out[s : s + chunk] = np.take_along_axis(top, order, axis=1)
    return out


def p50_ms(run, queries: np.ndarray) -> float:
    """Median wall time of ``run(q)`` over ``queries``, in ms (one query at a time)."""
    times = []
    for q in queries:
        t = time.perf_counter()
        run(q)
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e3)


def write_result(path: str | Path, result: dict) -> None:
    """Write a benchmark's JSON (parent folders created) and say where."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000.0, p))  # seconds -> ms


def _build(kind: str, ids, x, tmp, threads: int) -> tuple:
    from vop.index.vectors import VectorIndex

    t = time.perf_counter()
    index = VectorIndex.build(ids, x, kind=kind, threads=threads, huge_pages=True)  # as `vop serve` opens it
    build_s = time.perf_counter() - t
    with tempfile.TemporaryDirectory(dir=tmp) as d:
        index.save(d)
        size = os.path.getsize(Path(d) / "vectors.faiss")
    print(f"built {index.info.kind} index in {build_s:.1f}s, {size / 2**20:.0f} MiB on disk", flush=True)
    return index, {
        "kind": index.info.kind,
        "build_s": build_s,
        "size_bytes": size,
        "bytes_per_vector": size / len(ids),
        "nlist": index.info.nlist,
        "search_shards": index.shards,
    }


def _pq_extra_timers(index) -> dict:
    """Timers for one query at the index's default k_factor: the fast-scan alone (each search
    shard's share of the k * k_factor candidates, no re-rank), and the whole search with FAISS's
    own choice of scan kernel."""
    from vop.index.vectors import PQ_SCAN_IMPLEM, faiss_shards

    scans = index.scans()
    scan = scans[0] if len(scans) == 1 else faiss_shards(index.info.dim, scans)
    per_shard = max(1, int(K * index.info.k_factor / len(scans)))

    def scan_only(q):
        t = time.perf_counter()
        scan.search(q[None], per_shard)
        return time.perf_counter() - t

    def faiss_kernel(q):
        for s in scans:
            s.implem = 0  # FAISS picks the kernel
        t = time.perf_counter()
        index.search(q[None], K)
        dt = time.perf_counter() - t
        for s in scans:
            s.implem = PQ_SCAN_IMPLEM
        return dt

    return {"pq_scan_only": scan_only, "pq_faiss_default_kernel": faiss_kernel}


def bench_vectors(args) -> dict:
    import faiss

    print(f"generating {args.n:,} x {args.dim} unit vectors ...", flush=True)
    x = unit_vectors(args.n, args.dim, seed=0)
    ids = np.arange(args.n, dtype=np.int64)
    recall_q = unit_vectors(args.recall_queries, args.dim, seed=1)
    latency_q = unit_vectors(args.latency_queries, args.dim, seed=2)
    t = time.perf_counter()
    truth = exact_topk(x, recall_q)
    truth_s = time.perf_counter() - t
    print(f"exact ground truth for {len(recall_q)} queries: {truth_s:.1f}s", flush=True)

    auto, auto_meta = _build("auto", ids, x, args.tmp, args.threads)  # what `vop index` builds at this size
    ivf, ivf_meta = _build("ivf", ids, x, args.tmp, args.threads)
    flat = None
    if args.with_faiss_flat:
        flat = faiss.IndexFlatIP(args.dim)
        flat.add(x)
    # (name, index, knob name, knob value) for every point of both curves
    default_k_factor = auto.info.k_factor
    points = [(auto_meta["kind"], auto, "k_factor", v) for v in args.k_factor]
    points += [("ivf", ivf, "nprobe", v) for v in args.nprobe if v <= ivf.info.nlist]
    times = {"numpy": [], "faiss_flat": [], **{p[:1] + p[2:]: [] for p in points}}
    extra = _pq_extra_timers(auto) if auto_meta["kind"] == "pq" else {}  # where the pq time goes
    times.update({name: [] for name in extra})
    for q in latency_q:  # every method back to back on each query
        t = time.perf_counter()
        brute_force(x, q)
        times["numpy"].append(time.perf_counter() - t)
        if flat is not None:
            t = time.perf_counter()
            flat.search(q[None], K)
            times["faiss_flat"].append(time.perf_counter() - t)
        for name, index, knob, value in points:
            index.set_params(**{knob: value})
            t = time.perf_counter()
            index.search(q[None], K)
            times[(name, knob, value)].append(time.perf_counter() - t)
        for name, run in extra.items():
            times[name].append(run(q))

    auto.set_params(k_factor=default_k_factor)
    bf_p50 = pct(times["numpy"], 50)
    curves = {auto_meta["kind"]: [], "ivf": []}
    for name, index, knob, value in points:
        index.set_params(**{knob: value})
        _, found = index.search(recall_q, K)
        lat = times[(name, knob, value)]
        row = {
            knob: value,
            "recall_at_10": recall_at_k(found, truth),
            "p50_ms": pct(lat, 50),
            "p99_ms": pct(lat, 99),
        }
        row["speedup_vs_numpy_p50"] = bf_p50 / row["p50_ms"]
        curves[name].append(row)
        print(
            f"  {name} {knob} {value:>5}: recall@10 {row['recall_at_10']:.3f}  p50 {row['p50_ms']:.2f} ms  "
            f"p99 {row['p99_ms']:.2f} ms  {row['speedup_vs_numpy_p50']:.1f}x faster than numpy",
            flush=True,
        )
    meets = {
        name: [r for r in rows if r["recall_at_10"] >= 0.95 and r["speedup_vs_numpy_p50"] >= 20]
        for name, rows in curves.items()
    }
    result = {
        "n": args.n,
        "dim": args.dim,
        "k": K,
        "recall_queries": len(recall_q),
        "latency_queries": len(latency_q),
        "indexes": {auto_meta["kind"]: auto_meta, "ivf": ivf_meta},
        "default_kind_at_this_size": auto_meta["kind"],
        "default_k_factor": default_k_factor,
        "numpy_bruteforce": {"p50_ms": bf_p50, "p99_ms": pct(times["numpy"], 99)},
        "curves": curves,
        "target": {
            "recall_at_10": 0.95, "speedup_vs_numpy": 20, "met_by": {name: rows for name, rows in meets.items()}
        },
        "ground_truth_s": truth_s,
    }
    if extra:
        result["pq_breakdown"] = dict(
            k_factor=default_k_factor,
            **{f"{name}_p50_ms": pct(times[name], 50) for name in extra},
            **{f"{name}_p99_ms": pct(times[name], 99) for name in extra},
        )
        print(f"pq breakdown at k_factor {default_k_factor}: {result['pq_breakdown']}", flush=True)
    if flat is not None:
        result["faiss_flat_exact"] = {
            "p50_ms": pct(times["faiss_flat"], 50), "p99_ms": pct(times["faiss_flat"], 99)
        }
    print(
        f"numpy brute force: p50 {bf_p50:.1f} ms, p99 {result['numpy_bruteforce']['p99_ms']:.1f} ms",
        flush=True,
    )
    for name, rows in meets.items():
        met = ", ".join(f"{knob}={r[knob]}" for r in rows for knob in ("k_factor", "nprobe") if knob in r)
        print(f"target (recall@10 >= 0.95 at >= 20x): {name}: {met or 'not met'}", flush=True)
    return result


# --------------------------------------------------------------------------- part 2: serve load test
def _make_index(tmp: Path, backbone_name: str, videos: int) -> tuple[Path, float]:
    import torch

    sys.path.insert(0, str(REPO / "tests"))
    from conftest import color_video, write_video

    from vop.backbone.clip import build_clip
    from vop.backbone.loading import save_clip
    from vop.index.build import build_index
    from vop.index.encoder import VideoEncoder

    clip = build_clip(backbone_name, seed=0)
    backbone = save_clip(clip, tmp / f"{backbone_name}.safetensors")
    for i in range(videos):
        write_video(tmp / "videos" / f"v{i:03d}.mp4", color_video(num_frames=12, size=64, seed=i))
    t = time.perf_counter()
    with torch.inference_mode():
        enc = VideoEncoder.from_clip(clip, frames=4, backbone_source=str(backbone))
        build_index(tmp / "videos", tmp / "index", enc, progress=False)
    return tmp / "index", time.perf_counter() - t


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_serve(args) -> dict:

    with tempfile.TemporaryDirectory(dir=args.tmp) as tmpdir:
        tmp = Path(tmpdir)
        index, index_s = _make_index(tmp, args.serve_backbone, args.serve_videos)
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vop",
                "serve",
                str(index),
                "--port",
                str(port),
                "--threads",
                str(args.threads),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            _wait(url, proc)
            return _load(url, args) | {
                "backbone": args.serve_backbone, "videos": args.serve_videos, "index_build_s": index_s
            }
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def _wait(url: str, proc, timeout: float = 120.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"vop serve exited: {proc.stderr.read().decode()}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise TimeoutError("vop serve did not start")


def _load(url: str, args) -> dict:
    """``requests`` POST /search calls from ``clients`` threads, stopped at ``time_limit`` seconds."""
    import httpx

    words = ["dog", "red", "square", "car", "kitchen", "person", "ball", "moves", "left", "blue", "circle"]
    rng = np.random.default_rng(0)
    queries = [" ".join(rng.choice(words, size=5)) for _ in range(args.requests)]
    next_i, lock = [0], threading.Lock()
    latencies, errors = [], []
    deadline = time.monotonic() + args.time_limit

    def client():
        with httpx.Client(base_url=url, timeout=30) as http:
            while time.monotonic() < deadline:
                with lock:
                    i = next_i[0]
                    next_i[0] += 1
                if i >= len(queries):
                    return
                t = time.perf_counter()
                try:
                    res = http.post("/search", json={"query": queries[i], "k": 10})
                    ok = res.status_code == 200 and len(res.json()["results"]) == min(10, args.serve_videos)
                except httpx.HTTPError as err:
                    ok, res = False, err
                dt = time.perf_counter() - t
                with lock:
                    (latencies if ok else errors).append(dt if ok else repr(res))

    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    start = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - start
    out = {
        "clients": args.clients,
        "requests_planned": args.requests,
        "time_limit_s": args.time_limit,
        "completed": len(latencies),
        "errors": len(errors),
        "error_samples": errors[:5],
        "wall_s": wall,
        "throughput_rps": len(latencies) / wall,
        "p50_ms": pct(latencies, 50) if latencies else None,
        "p99_ms": pct(latencies, 99) if latencies else None,
    }
    print(
        f"serve: {out['completed']} ok, {out['errors']} errors in {wall:.1f}s with {args.clients} clients: "
        f"{out['throughput_rps']:.1f} req/s, p50 {out['p50_ms']:.1f} ms, p99 {out['p99_ms']:.1f} ms",
        flush=True,
    )
    return out


# --------------------------------------------------------------------------- part 3: probes
def probe_huge_pages(args) -> dict:
    import faiss

    from vop.index.vectors import VectorIndex

    faiss.omp_set_num_threads(args.threads)
    x = unit_vectors(args.n, args.dim, seed=0)
    queries = unit_vectors(args.queries, args.dim, seed=2)
    ids = np.arange(args.n)
    indexes = {
        "plain": VectorIndex.build(ids, x, kind="pq", threads=args.threads),
        "huge_pages": VectorIndex.build(ids, x, kind="pq", threads=args.threads, huge_pages=True),
    }
    k_factor = args.k_factor[0]
    for vi in indexes.values():
        vi.set_params(k_factor=k_factor)
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
    return {
        "benchmark": "search_huge_pages",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "n": args.n,
        "dim": args.dim,
        "threads": args.threads,
        "search_shards": indexes["plain"].shards,
        "k_factor": k_factor,
        "rounds": args.rounds,
        "queries_per_block": args.queries,
        "p50_ms_per_round": p50s,
        "median_p50_ms": summary,
        "huge_pages_over_plain": ratio,
        "loadavg_after": os.getloadavg(),
    }


PQ_CODE_CANDIDATES = (500, 1000, 2000, 4000, 6000, 10000)


def probe_pq_codes(args) -> dict:
    import faiss

    from vop.index.vectors import PQ_SCAN_IMPLEM, PQ_TRAIN

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
        fast = scan.search(queries, max(PQ_CODE_CANDIDATES))[1]
        floats = None
        if m == args.dim // 4:  # the code vop uses: also with float tables (slow, recall only)
            plain = faiss.IndexPQ(args.dim, m, 4, faiss.METRIC_INNER_PRODUCT)
            plain.pq = scan.pq
            plain.is_trained = True
            plain.add(x)
            floats = plain.search(queries, max(PQ_CODE_CANDIDATES))[1]
            del plain
        for k in PQ_CODE_CANDIDATES:
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
            floats_text = "" if floats is None else f" (float tables {row['candidate_recall_float_tables']:.3f})"
            print(f"{row['code']:<10} k'={k:>5}: candidate recall {row['candidate_recall_fast_scan']:.3f}"
                  f"{floats_text}  scan {row['scan_p50_ms']:.2f} ms", flush=True)
        del scan
    return {
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


def probe_hnsw(args) -> dict:
    import faiss

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
    return {
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


# --probe NAME -> (function, default N, default queries, default latency queries, default output name)
PROBES = {
    "huge-pages": (probe_huge_pages, 1_000_000, 50, None, "search_huge_pages_{threads}thread.json"),
    "pq-codes": (probe_pq_codes, 1_000_000, 200, 40, "search_pq_variants.json"),
    "hnsw": (probe_hnsw, 100_000, 200, 50, "search_hnsw_probe.json"),
}


def run_probe(args) -> None:
    run, n, queries, latency_queries, out = PROBES[args.probe]
    if args.probe != "huge-pages" and args.threads != 1:
        raise SystemExit(f"--probe {args.probe} runs its searches on 1 thread; --threads applies to huge-pages")
    args.n = args.n or n
    args.queries = args.queries or queries
    args.latency_queries = args.latency_queries or latency_queries
    if args.probe == "huge-pages" and len(args.k_factor) != 1:
        args.k_factor = [600]  # the index's default unless one --k-factor is given
    result = run(args)
    write_result(args.out or REPO / "benchmarks" / "results" / out.format(threads=args.threads), result)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--probe", choices=sorted(PROBES), help="run one probe instead of the benchmark (see above)")
    p.add_argument("--n", type=int, default=None, help="vectors (default 1,000,000; --probe hnsw 100,000)")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--recall-queries", type=int, default=1000)
    p.add_argument("--latency-queries", type=int, default=None, help="default 100 (probes: their own)")
    p.add_argument("--queries", type=int, default=None,
                   help="probes only: recall queries (pq-codes, hnsw: 200) or queries per block (huge-pages: 50)")
    p.add_argument("--rounds", type=int, default=6, help="--probe huge-pages: rounds of alternating blocks")
    p.add_argument("--ef", type=int, nargs="+", default=[64, 128, 256, 512, 1024, 2048],
                   help="--probe hnsw: efSearch values")
    p.add_argument("--nprobe", type=int, nargs="+", default=[16, 64, 256, 1024, 2048, 4000])
    p.add_argument(
        "--k-factor", type=int, nargs="+", default=[50, 100, 200, 300, 400, 500, 600, 800, 1000, 2000]
    )
    p.add_argument(
        "--with-faiss-flat",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time FAISS exact IndexFlatIP (our exact mode; +N*dim*4 bytes of memory)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads for NumPy/BLAS, FAISS, torch and the pq index's search shards alike (default 1; "
        "the BLAS variables are set from it before NumPy loads, unless already in the environment)",
    )
    p.add_argument("--serve-backbone", default="ViT-B-32", help="random-weight CLIP config for the load test")
    p.add_argument("--serve-videos", type=int, default=16)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests", type=int, default=400)
    p.add_argument("--time-limit", type=float, default=120.0)
    p.add_argument("--skip-vectors", action="store_true")
    p.add_argument("--skip-serve", action="store_true")
    p.add_argument("--tmp", default=None, help="folder for temporary files")
    p.add_argument("--out", default=None, help="default benchmarks/results/search.json (probes: their own)")
    args = p.parse_args()
    if args.probe:
        run_probe(args)
        return
    args.n = args.n or 1_000_000
    args.latency_queries = args.latency_queries or 100
    args.out = args.out or str(REPO / "benchmarks" / "results" / "search.json")

    import faiss
    import torch

    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        if os.environ.get(var) != str(args.threads):
            print(
                f"warning: {var}={os.environ.get(var)} but --threads {args.threads}; NumPy's BLAS may use "
                f"another thread count than FAISS",
                file=sys.stderr,
            )
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    result = {
        "benchmark": "search",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {
            "note": "CPU VM; ratios measured back to back in one run (load averages recorded)",
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "processor": platform.processor(),
        },
        "threads": {
            "torch": args.threads,
            "faiss": args.threads,
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "unset"),
            "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "unset"),
            "OPENBLAS_THREAD_TIMEOUT": os.environ.get("OPENBLAS_THREAD_TIMEOUT", "unset"),
            "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "unset"),
            "pq_search_shards": args.threads,
        },
        "versions": {"numpy": np.__version__, "faiss": faiss.__version__, "torch": torch.__version__},
    }
    result["machine"]["loadavg_1_5_15_start"] = os.getloadavg()
    if args.tmp:
        Path(args.tmp).mkdir(parents=True, exist_ok=True)
    if not args.skip_vectors:
        result["vectors"] = bench_vectors(args)
        result["machine"]["loadavg_1_5_15_after_vectors"] = os.getloadavg()
    if not args.skip_serve:
        result["serve"] = bench_serve(args)
    write_result(args.out, result)


if __name__ == "__main__":
    main()
