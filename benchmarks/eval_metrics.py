"""Chunked retrieval ranking vs the full similarity matrix: time and memory, side by side.

For N text queries against N videos (random unit vectors, 512-d, one correct video per query),
``full`` builds the whole ``[N, N]`` float32 matrix and ranks it (what a naive evaluation does);
``chunked`` is ``vop.eval.metrics.chunked_ranks`` with its default 64 MB block budget. Both run
in their own subprocess (``--case``) so each peak RSS is its own; the overhead reported is the
peak RSS minus the RSS just before ranking (embeddings already in memory). The ranks of the two
paths are compared where both run (plain ranks must be identical; DSL ranks may differ where
float rounding of the two softmax formulations flips a near-tie, so the count is reported). At N = 50,000 only the chunked path runs: the
full matrix alone would be 10 GB.

    python benchmarks/eval_metrics.py [--sizes 5000 10000 50000] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "eval_metrics.json"
FULL_LIMIT = 20_000  # above this the full matrix (N^2 * 4 bytes) is not attempted


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_case(path: str, n: int, dsl: bool, threads: int, ranks_out: str) -> dict:
    import numpy as np
    import torch

    from vop.eval.metrics import chunked_ranks, dsl_column_logsumexp, dsl_rescorer, ranks_from_scores

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    videos = torch.nn.functional.normalize(torch.randn(n, 512, generator=g), dim=-1)
    texts = torch.nn.functional.normalize(videos + 1.5 * torch.randn(n, 512, generator=g) / 512**0.5, dim=-1)
    positives = list(range(n))
    # keep the baseline honest: clearing the kernel's peak mark makes VmHWM start from here
    try:
        Path("/proc/self/clear_refs").write_text("5")
        hwm_reset = True
    except OSError:
        hwm_reset = False
    base = rss_mb()
    t0 = time.perf_counter()
    if path == "full":
        sim = texts @ videos.T  # [N, N]
        if dsl:
            sim = sim * torch.softmax(100.0 * sim, dim=0)
        ranks = ranks_from_scores(sim, positives)
    else:
        rescore = dsl_rescorer(dsl_column_logsumexp(texts, videos)) if dsl else None
        ranks = chunked_ranks(texts, videos, positives, rescore=rescore)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if hwm_reset:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    np.save(ranks_out, ranks)
    return {"path": path, "n": n, "dsl": dsl, "seconds": seconds, "rss_before_mb": base,
            "peak_rss_mb": peak, "overhead_mb": peak - base, "peak_mark_reset": hwm_reset,
            "R@1": float((ranks <= 1).mean() * 100)}


def spawn(path: str, n: int, dsl: bool, threads: int, tmp: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    ranks = os.path.join(tmp, f"{path}-{n}-{int(dsl)}.npy")
    out = subprocess.run([sys.executable, __file__, "--case", path, str(n), str(int(dsl)), ranks,
                          "--threads", str(threads)], capture_output=True, text=True, env=env, check=True)
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "ranks_file": ranks}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[5000, 10000, 50000])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--case", nargs=4, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    if args.case:
        path, n, dsl, ranks_out = args.case
        print(json.dumps(run_case(path, int(n), bool(int(dsl)), args.threads, ranks_out)))
        return
    import numpy as np

    tmp = tempfile.mkdtemp(prefix="vop-eval-bench-")

    rows = []
    for n in args.sizes:
        for dsl in (False, True):
            if dsl and n > FULL_LIMIT:
                continue  # three chunked passes over 50k x 50k: minutes on this machine, same memory story
            pair = {"chunked": spawn("chunked", n, dsl, args.threads, tmp)}
            if n <= FULL_LIMIT:
                pair["full"] = spawn("full", n, dsl, args.threads, tmp)
            c, f = pair["chunked"], pair.get("full")
            row = {"n": n, "dsl": dsl, "chunked": c, "full": f}
            line = (f"N={n:>6} dsl={dsl!s:<5} chunked {c['seconds']:7.2f} s, +{c['overhead_mb']:7.0f} MB"
                    f"  R@1 {c['R@1']:.2f}")
            if f:
                row["time_ratio_chunked_over_full"] = c["seconds"] / f["seconds"]
                row["memory_ratio_full_over_chunked"] = f["overhead_mb"] / max(c["overhead_mb"], 1.0)
                differ = int((np.load(c["ranks_file"]) != np.load(f["ranks_file"])).sum())
                row["queries_with_different_rank"] = differ
                row["same_R@1"] = c["R@1"] == f["R@1"]
                line += (f" | full {f['seconds']:7.2f} s, +{f['overhead_mb']:7.0f} MB | time x"
                         f"{row['time_ratio_chunked_over_full']:.2f}, memory /{row['memory_ratio_full_over_chunked']:.1f},"
                         f" ranks differing: {differ}/{n}")
            print(line, flush=True)
            rows.append(row)
    import torch

    result = {
        "benchmark": "eval_metrics: chunked ranking vs full similarity matrix",
        "machine": f"{os.cpu_count()}-core CPU, no GPU; load average {os.getloadavg()[0]:.2f} at the end",
        "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
        "threads": args.threads, "embedding_dim": 512, "chunk_budget_mb": 64,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
