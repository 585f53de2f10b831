"""``vop index`` throughput and query latency, fp32 against int8 (``--precision``), one process.

* end to end: ``vop.index.build.build_index`` on a folder of real videos (decode of the next
  video overlapped with encoding, as ``vop index`` runs it) into a fresh index per run; videos
  per minute of each precision and their ratio;
* encoder only: ``encode_video`` of 12 frames at 224 px (and int8 with q/k/v left fp32, to show
  what quantizing them adds);
* query latency: what ``vop serve`` does per text query (tokenize + encode the text + search the
  index), p50 and p99.

Backbone: ViT-B/32 with random weights (seed 0): speed does not depend on the values. The same
threads for both; repeats interleave fp32 and int8 (alternating which goes first) so that load
from other processes hits both alike, and the ratios are of medians. ``/proc/loadavg`` is recorded
before and after. ``--check`` exits 1 unless encoder >= 2.2x and end to end >= 1.8x.

It also measures the ceiling of this approach on the machine (Amdahl): the int8/fp32 ratio of
each linear layer alone at the encoder's shapes and the share of the fp32 encoder's time those
layers take; the encoder cannot beat ``1 / (rest + linears / gemm_ratio)``. The CPU's SIMD flags
are recorded, since the int8 kernels' speed depends on them (AVX2 only vs AVX-512 VNNI / AMX).

    python benchmarks/index_throughput.py [--videos DIR] [--threads 2] [--repeats 3] [--check]
        [--out benchmarks/results/index_throughput.json]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP workers sleep: spinning ones steal a shared CPU

import argparse
import copy
import functools
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from int8_common import default_videos, finish, loadavg

from vop.backbone.clip import build_clip
from vop.index.build import build_index
from vop.index.discover import discover_videos
from vop.index.encoder import VideoEncoder

ENCODER_TARGET = 2.2
END_TO_END_TARGET = 1.8
QUERIES = ["a man is cooking pasta in a kitchen", "a dog runs on the beach", "two people play tennis",
           "a rabbit in a forest", "cars on a highway at night", "someone is flipping a pancake",
           "a person talks to the camera", "a cartoon animal wakes up"]


def copy_decodable(src: Path, dst: Path, limit: int, encoder: VideoEncoder) -> list[str]:
    """Copy up to ``limit`` videos of ``src`` that decode into ``dst`` (undecodable ones would
    measure the error path, not encoding)."""
    from vop.data.decode import DecodeError

    kept = []
    for f in discover_videos(src):
        if len(kept) == limit:
            break
        try:
            encoder.decode(src / f.relpath)
        except DecodeError:
            continue
        target = dst / f.relpath.replace("/", "__")
        shutil.copy2(src / f.relpath, target)
        kept.append(f.relpath)
    return kept


def cpu_flags() -> str:
    """The SIMD extensions the int8 kernels can use (fbgemm: AVX2; AVX-512 VNNI/AMX multiply int8 faster)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split("flags")[1].split("\n")[0].split())
    except (OSError, IndexError):
        return "unknown"
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
    return " ".join(f for f in wanted if f in flags) or "none of avx2/avx512/vnni/amx"


def int8_ceiling(clip, encoder_fp32_s: float, repeats: int) -> dict:
    """How much faster int8 linears can make the encoder here (Amdahl): each linear layer of one
    image-tower block timed alone at the encoder's shape (12 frames x 50 tokens), fp32 ``F.linear``
    against :class:`Int8Linear`; the rest of the encoder (attention, LayerNorm, GELU, patch
    embedding) stays fp32 and keeps its time."""
    import torch.nn.functional as F

    from vop.backbone.quantize import Int8Linear

    blk = clip.visual.transformer.resblocks[0]
    m = 12 * (1 + (clip.cfg.vision.image_size // clip.cfg.vision.patch_size) ** 2)
    layers = {"attn.in_proj": (blk.attn.in_proj_weight, blk.attn.in_proj_bias),
              "attn.out_proj": (blk.attn.out_proj.weight, blk.attn.out_proj.bias),
              "mlp.c_fc": (blk.mlp.c_fc.weight, blk.mlp.c_fc.bias), "mlp.c_proj": (blk.mlp.c_proj.weight, blk.mlp.c_proj.bias)}
    per_layer = {}
    with torch.no_grad():
        for name, (w, b) in layers.items():
            x = torch.randn(m, w.shape[1])
            q = Int8Linear(w, b, name)
            times = {"fp32": [], "int8": []}
            calls = {"fp32": functools.partial(F.linear, x, w, b), "int8": functools.partial(q, x)}
            for r in range(repeats + 1):
                for p, f in calls.items():
                    t = time.perf_counter()
                    for _ in range(5):
                        f()
                    if r:
                        times[p].append((time.perf_counter() - t) / 5)
            per_layer[name] = {p: statistics.median(v) for p, v in times.items()}
    depth = len(clip.visual.transformer.resblocks)
    fp32 = depth * sum(v["fp32"] for v in per_layer.values())
    int8 = depth * sum(v["int8"] for v in per_layer.values())
    rest = max(encoder_fp32_s - fp32, 0.0)
    return {"cpu_flags": cpu_flags(), "tokens": m, "per_layer_s": per_layer, "gemm_ratio": fp32 / int8,
            "linear_share_fp32": min(fp32 / encoder_fp32_s, 1.0), "encoder_ceiling": encoder_fp32_s / (rest + int8)}


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=Path, help="folder of real videos (default: tests/data/videos, "
                    "else /work/shared/data/videos)")
    ap.add_argument("--max-videos", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="end-to-end runs per precision")
    ap.add_argument("--encoder-repeats", type=int, default=5)
    ap.add_argument("--queries", type=int, default=40, help="timed text queries per precision")
    ap.add_argument("--check", action="store_true",
                    help=f"exit 1 unless encoder >= {ENCODER_TARGET}x and end to end >= {END_TO_END_TARGET}x")
    ap.add_argument("--out", default="benchmarks/results/index_throughput.json")
    args = ap.parse_args()
    src = args.videos or default_videos()
    if src is None or not src.is_dir():
        print("index_throughput: no video folder; pass --videos DIR", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    result = {"threads": args.threads, "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
              "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "loadavg_before": loadavg(),
              "backbone": "ViT-B-32, random weights (seed 0)", "frames": 12, "image_size": 224}
    clip = build_clip("ViT-B-32", seed=0)
    clip.weights_sha256  # noqa: B018 - hashed once, outside every timing
    clip8, clip_noqkv = copy.deepcopy(clip), copy.deepcopy(clip)
    enc = {"fp32": VideoEncoder.from_clip(clip, backbone_source="random-ViT-B-32")}
    t = time.perf_counter()
    enc["int8"] = VideoEncoder.from_clip(clip8, backbone_source="random-ViT-B-32", precision="int8")
    result["int8_build_seconds"] = time.perf_counter() - t
    enc_noqkv = VideoEncoder.from_clip(clip_noqkv, backbone_source="random-ViT-B-32")
    from vop.backbone.quantize import quantize_clip

    quantize_clip(clip_noqkv, keep=[r"attn\.in_proj$"])  # int8 as quantize_dynamic reaches it

    with tempfile.TemporaryDirectory() as tmp:
        videos = Path(tmp) / "videos"
        videos.mkdir()
        used = copy_decodable(src, videos, args.max_videos, enc["fp32"])
        result["videos"] = used
        result["video_bytes"] = sum(p.stat().st_size for p in videos.iterdir())

        # ---- end to end
        runs = {"fp32": [], "int8": []}
        for r in range(args.repeats + 1):  # run 0 warms up (page cache, allocator), not counted
            for p in (("fp32", "int8") if r % 2 == 0 else ("int8", "fp32")):
                out = Path(tmp) / f"index-{p}-{r}"
                t = time.perf_counter()
                report = build_index(videos, out, enc[p], progress=False, vector_index="exact")
                seconds = time.perf_counter() - t
                if report.encoded != len(used):
                    raise RuntimeError(f"{p}: encoded {report.encoded} of {len(used)} videos")
                if r:
                    runs[p].append(seconds)
        e2e = {p: {"runs_s": v, "median_s": statistics.median(v),
                   "videos_per_min": 60 * len(used) / statistics.median(v)} for p, v in runs.items()}
        e2e["ratio"] = e2e["fp32"]["median_s"] / e2e["int8"]["median_s"]
        result["end_to_end"] = e2e

        # ---- encoder only (decoded once)
        decoded = enc["fp32"].decode(videos / min(os.listdir(videos)))
        enc["int8-no-qkv"] = enc_noqkv
        times = {k: [] for k in enc}
        for e in enc.values():  # warm-up
            e.encode_decoded(decoded)
        for r in range(args.encoder_repeats):
            for p in (list(enc) if r % 2 == 0 else list(reversed(enc))):
                t = time.perf_counter()
                enc[p].encode_decoded(decoded)
                times[p].append(time.perf_counter() - t)
        result["encoder"] = {p: {"runs_s": v, "median_s": statistics.median(v)} for p, v in times.items()}
        for p in ("int8", "int8-no-qkv"):
            result["encoder"][f"ratio_{p}"] = result["encoder"]["fp32"]["median_s"] / result["encoder"][p]["median_s"]
        a = enc["fp32"].encode_decoded(decoded).vector
        b = enc["int8"].encode_decoded(decoded).vector
        result["encoder"]["cosine_int8_vs_fp32"] = float(a @ b)

        # ---- query latency: text encoding + search of the index, as vop serve runs a query
        from vop.index.search import Searcher

        searcher = Searcher(Path(tmp) / "index-fp32-1", search_threads=1, huge_pages=False)
        lat = {"fp32": [], "int8": []}
        for p in lat:
            searcher.encoder = enc[p]
            searcher.search_text(QUERIES[0], 10)  # warm-up
        for i in range(args.queries):
            for p in (("fp32", "int8") if i % 2 == 0 else ("int8", "fp32")):
                searcher.encoder = enc[p]
                t = time.perf_counter()
                searcher.search_text(QUERIES[i % len(QUERIES)], 10)
                lat[p].append(time.perf_counter() - t)
        searcher.close()
        result["query_latency_ms"] = {p: {"p50": 1e3 * pct(v, 50), "p99": 1e3 * pct(v, 99), "count": len(v)}
                                      for p, v in lat.items()}
    result["ceiling"] = int8_ceiling(clip, result["encoder"]["fp32"]["median_s"], args.encoder_repeats)
    result["loadavg_after"] = loadavg()
    ratio_enc, ratio_e2e = result["encoder"]["ratio_int8"], e2e["ratio"]
    failed = []
    if ratio_enc < ENCODER_TARGET:
        failed.append(f"encoder int8 {ratio_enc:.2f}x fp32 < {ENCODER_TARGET}x")
    if ratio_e2e < END_TO_END_TARGET:
        failed.append(f"vop index end to end int8 {ratio_e2e:.2f}x fp32 < {END_TO_END_TARGET}x")
    print(f"{len(used)} videos, {args.threads} threads, load average before/after: "
          f"{result['loadavg_before']} / {result['loadavg_after']}")
    print(f"end to end: fp32 {e2e['fp32']['videos_per_min']:.1f} videos/min, int8 {e2e['int8']['videos_per_min']:.1f} "
          f"videos/min: {ratio_e2e:.2f}x")
    print(f"encoder (12 frames): fp32 {result['encoder']['fp32']['median_s']:.3f} s, int8 "
          f"{result['encoder']['int8']['median_s']:.3f} s: {ratio_enc:.2f}x (q/k/v fp32: "
          f"{result['encoder']['ratio_int8-no-qkv']:.2f}x); cosine {result['encoder']['cosine_int8_vs_fp32']:.6f}")
    c = result["ceiling"]
    print(f"ceiling on this CPU ({c['cpu_flags']}): int8 GEMMs {c['gemm_ratio']:.2f}x fp32 at the encoder's shapes; "
          f"linear layers are {100 * c['linear_share_fp32']:.0f}% of the fp32 encoder time, so int8 linears "
          f"can make the encoder at most {c['encoder_ceiling']:.2f}x faster")
    q = result["query_latency_ms"]
    print(f"query (encode text + search): fp32 p50 {q['fp32']['p50']:.1f} ms p99 {q['fp32']['p99']:.1f} ms; "
          f"int8 p50 {q['int8']['p50']:.1f} ms p99 {q['int8']['p99']:.1f} ms")
    return finish(result, args.out, failed, args.check)


if __name__ == "__main__":
    sys.exit(main())
