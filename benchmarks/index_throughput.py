"""``vop index`` throughput, query latency and start-up of every CPU runtime x precision, one process.

Variants, side by side on the same machine and threads: ``torch fp32`` (the reference), ``torch
int8`` (fbgemm, ``vop.backbone.quantize``), ``openvino fp32``, ``openvino bf16`` (only where OpenVINO
reports native bf16), ``openvino int8`` (NNCF, calibrated on the benchmark's own videos). For each:

* start-up: building the encoder and its graphs with an empty cache (first start: export, convert,
  calibrate, compile) and again with the cache filled (cached start: what a second ``vop index`` /
  ``vop serve`` pays); torch int8's build of the int8 layers;
* encoder only: ``encode_video`` of one decoded video (12 frames at 224 px);
* end to end: ``vop.index.build.build_index`` on a folder of real videos into a fresh index per
  run (decoding of the next video overlapped with encoding, as ``vop index`` runs it), videos/min;
  also the time to only decode the same videos, so the split decode / encode / rest is visible;
* query latency: what ``vop serve`` does per text query (tokenize + encode text + search), p50/p99;
* cosine of each variant's video vector to torch fp32's (speed without quality is no result).

Backbone: ViT-B/32 shapes with random weights (seed 0) and every parameter perturbed (no real
weights here; speed does not depend on the values, int8 calibration does a little). Repeats
interleave the variants (rotating which goes first) so that load from other processes hits all
alike; ratios are of medians. The CPU model, its SIMD flags, OpenVINO's view of the CPU and the
load average before and after are recorded. ``--check`` exits 1 unless openvino int8 reaches the
targets against torch fp32: encoder >= 3x, end to end >= 2.5x, query p50 <= 0.5x.

    python benchmarks/index_throughput.py [--videos DIR] [--threads 2] [--repeats 3] [--check]
        [--variants torch-fp32,torch-int8,openvino-fp32,openvino-bf16,openvino-int8]
        [--out benchmarks/results/index_throughput.json]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP workers sleep: spinning ones steal a shared CPU

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from int8_common import default_videos, finish, loadavg
from machine import cpu_flags, cpu_model

from vop.backbone.clip import build_clip
from vop.index.build import build_index
from vop.index.discover import discover_videos
from vop.index.encoder import VideoEncoder
from vop.testing import perturb_every_parameter

TARGETS = {"encoder": 3.0, "end_to_end": 2.5, "query_p50": 0.5}  # openvino int8 against torch fp32
REFERENCE = "torch-fp32"
ALL_VARIANTS = ("torch-fp32", "torch-int8", "openvino-fp32", "openvino-bf16", "openvino-int8")
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
        shutil.copy2(src / f.relpath, dst / f.relpath.replace("/", "__"))
        kept.append(f.relpath)
    return kept


def cpu_info() -> dict:
    """CPU model, the SIMD extensions that change every ratio (AVX2 only vs AVX-512 / VNNI / BF16 /
    AMX), and what OpenVINO says the CPU computes natively."""
    from vop.runtime.openvino import cpu_capabilities

    return {"model": cpu_model(), "simd": cpu_flags(), "cores": os.cpu_count(),
            "openvino_capabilities": cpu_capabilities()}


def perturbed_clip(name: str, seed: int = 0):
    """Random CLIP with every parameter moved off its init (LayerNorms included)."""
    clip = build_clip(name, seed=seed)
    perturb_every_parameter(clip, seed + 1)
    clip.weights_sha256  # noqa: B018 - hashed once, outside every timing
    return clip


def make_encoder(clip, variant: str, videos: Path, calibration_videos: int) -> tuple[VideoEncoder, float]:
    """The encoder of ``variant`` with its graphs built now; seconds it took."""
    import copy

    runtime, precision = variant.split("-")
    t = time.perf_counter()
    # torch int8 replaces the backbone's layers in place: it gets its own copy (not timed as start-up
    # cost in a real run either, where the backbone is loaded once)
    source = copy.deepcopy(clip) if variant == "torch-int8" else clip
    t = time.perf_counter()
    enc = VideoEncoder.from_clip(source, backbone_source="random-ViT-B-32", runtime=runtime, precision=precision,
                                 calibrate_on=videos, calibration_videos=calibration_videos)
    if runtime == "openvino":
        enc.model.prepare("video", "text")
    return enc, time.perf_counter() - t


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def rotations(names: list[str], r: int) -> list[str]:
    k = r % len(names)
    return names[k:] + names[:k]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=Path, help="folder of real videos (default: tests/data/videos, "
                    "else /work/shared/data/videos)")
    ap.add_argument("--max-videos", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="end-to-end runs per variant")
    ap.add_argument("--encoder-repeats", type=int, default=5)
    ap.add_argument("--queries", type=int, default=40, help="timed text queries per variant")
    ap.add_argument("--calibration-videos", type=int, default=8)
    ap.add_argument("--backbone", default="ViT-B-32", help="CLIP config (random weights); tiny for a smoke run")
    ap.add_argument("--variants", default=",".join(ALL_VARIANTS))
    ap.add_argument("--check", action="store_true", help=f"exit 1 unless openvino int8 meets {TARGETS}")
    ap.add_argument("--out", default="benchmarks/results/index_throughput.json")
    args = ap.parse_args()
    src = args.videos or default_videos()
    if src is None or not src.is_dir():
        print("index_throughput: no video folder; pass --videos DIR", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    import openvino

    result = {"threads": args.threads, "torch": torch.__version__, "openvino": openvino.__version__,
              "cpu": cpu_info(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
              "loadavg_before": loadavg(), "load_average_before": os.getloadavg(),
              "backbone": f"{args.backbone}, random weights (seed 0), every parameter perturbed", "frames": 12}
    clip = perturbed_clip(args.backbone)
    result["image_size"] = clip.cfg.vision.image_size
    variants = [v for v in args.variants.split(",") if v]
    if "openvino-bf16" in variants and "BF16" not in result["cpu"]["openvino_capabilities"]:
        variants.remove("openvino-bf16")
        result["skipped"] = {"openvino-bf16": "no native bf16 on this CPU (OpenVINO capabilities)"}

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["VOP_OPENVINO_CACHE"] = str(Path(tmp) / "ov-cache")
        videos = Path(tmp) / "videos"
        videos.mkdir()
        probe = VideoEncoder.from_clip(clip, backbone_source="random-ViT-B-32")
        used = copy_decodable(src, videos, args.max_videos, probe)
        result["videos"] = used
        result["video_bytes"] = sum(p.stat().st_size for p in videos.iterdir())

        # ---- start-up: first (empty cache) and cached
        enc, startup = {}, {}
        for v in variants:
            enc[v], first = make_encoder(clip, v, videos, args.calibration_videos)
            _, cached = make_encoder(clip, v, videos, args.calibration_videos)
            startup[v] = {"first_s": first, "cached_s": cached}
            print(f"start-up {v}: first {first:.2f} s, cached {cached:.2f} s", flush=True)
        result["startup"] = startup

        # ---- encoder only (decoded once) and cosine to the reference
        decoded = [probe.decode(videos / name) for name in sorted(os.listdir(videos))]
        ref_vectors = np.stack([enc[REFERENCE].encode_decoded(d).vector for d in decoded])
        times = {v: [] for v in variants}
        for v in variants:  # warm-up
            enc[v].encode_decoded(decoded[0])
        for r in range(args.encoder_repeats):
            for v in rotations(variants, r):
                t = time.perf_counter()
                enc[v].encode_decoded(decoded[0])
                times[v].append(time.perf_counter() - t)
        result["encoder"] = {}
        for v in variants:
            vec = np.stack([enc[v].encode_decoded(d).vector for d in decoded])
            cos = (vec * ref_vectors).sum(1)
            med = statistics.median(times[v])
            result["encoder"][v] = {"runs_s": times[v], "median_s": med,
                                    "ratio": statistics.median(times[REFERENCE]) / med,
                                    "cosine_to_torch_fp32": {"min": float(cos.min()), "median": float(np.median(cos))}}
            print(f"encoder {v}: {med:.3f} s, {result['encoder'][v]['ratio']:.2f}x, cosine min {cos.min():.6f}",
                  flush=True)

        # ---- decoding alone (the part end to end adds to encoding)
        t = time.perf_counter()
        for name in sorted(os.listdir(videos)):
            probe.decode(videos / name)
        result["decode_only_s"] = time.perf_counter() - t

        # ---- end to end
        runs = {v: [] for v in variants}
        for r in range(args.repeats):
            for v in rotations(variants, r):
                out = Path(tmp) / f"index-{v}-{r}"
                t = time.perf_counter()
                report = build_index(videos, out, enc[v], progress=False, vector_index="exact")
                seconds = time.perf_counter() - t
                if report.encoded != len(used):
                    raise RuntimeError(f"{v}: encoded {report.encoded} of {len(used)} videos")
                runs[v].append(seconds)
                if r + 1 < args.repeats or v != REFERENCE:
                    shutil.rmtree(out)
        ref_e2e = statistics.median(runs[REFERENCE])
        result["end_to_end"] = {v: {"runs_s": s, "median_s": statistics.median(s),
                                    "videos_per_min": 60 * len(used) / statistics.median(s),
                                    "ratio": ref_e2e / statistics.median(s)} for v, s in runs.items()}
        for v in variants:
            e = result["end_to_end"][v]
            print(f"end to end {v}: {e['videos_per_min']:.1f} videos/min, {e['ratio']:.2f}x", flush=True)

        # ---- query latency: text encoding + search of the index, as vop serve runs a query
        from vop.index.search import Searcher

        searcher = Searcher(Path(tmp) / f"index-{REFERENCE}-{args.repeats - 1}", search_threads=1, huge_pages=False)
        lat = {v: [] for v in variants}
        for v in variants:
            searcher.encoder = enc[v]
            searcher.search_text(QUERIES[0], 10)  # warm-up
        for i in range(args.queries):
            for v in rotations(variants, i):
                searcher.encoder = enc[v]
                t = time.perf_counter()
                searcher.search_text(QUERIES[i % len(QUERIES)], 10)
                lat[v].append(time.perf_counter() - t)
        searcher.close()
        ref_p50 = pct(lat[REFERENCE], 50)
        result["query_latency_ms"] = {v: {"p50": 1e3 * pct(s, 50), "p99": 1e3 * pct(s, 99), "count": len(s),
                                          "p50_vs_torch_fp32": pct(s, 50) / ref_p50} for v, s in lat.items()}
        for v in variants:
            q = result["query_latency_ms"][v]
            print(f"query {v}: p50 {q['p50']:.1f} ms, p99 {q['p99']:.1f} ms ({q['p50_vs_torch_fp32']:.2f}x)", flush=True)
    result["loadavg_after"] = loadavg()
    result["load_average_after"] = os.getloadavg()
    failed = []
    if "openvino-int8" in variants:
        e, x, q = (result["encoder"]["openvino-int8"]["ratio"], result["end_to_end"]["openvino-int8"]["ratio"],
                   result["query_latency_ms"]["openvino-int8"]["p50_vs_torch_fp32"])
        if e < TARGETS["encoder"]:
            failed.append(f"encoder openvino int8 {e:.2f}x torch fp32 < {TARGETS['encoder']}x")
        if x < TARGETS["end_to_end"]:
            failed.append(f"vop index end to end openvino int8 {x:.2f}x torch fp32 < {TARGETS['end_to_end']}x")
        if q > TARGETS["query_p50"]:
            failed.append(f"query p50 openvino int8 {q:.2f}x torch fp32 > {TARGETS['query_p50']}x")
    else:
        failed.append("openvino-int8 was not measured")
    c = result["cpu"]
    print(f"{len(used)} videos, {args.threads} threads, {c['model']} ({c['simd']}; OpenVINO: "
          f"{' '.join(c['openvino_capabilities'])}); load average before/after: "
          f"{result['loadavg_before']} / {result['loadavg_after']}")
    return finish(result, args.out, failed, args.check)


if __name__ == "__main__":
    sys.exit(main())
