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
  also the split: decoding alone, decoding + preparing (resize, normalise, thumbnail: the decode
  workers' part), the model alone on every video, the same build with a model that costs nothing
  (decode, prepare, shards, index), and from these how much of decoding the overlap hid and the
  least time the cores allow (the model's threads busy, decoding on top); and
  openvino int8's build with ``--more-decode-workers``;
* query latency: what ``vop serve`` does per text query (tokenize + encode text + search), p50/p99;
* cosine of each variant's video vector to torch fp32's (speed without quality is no result);
* the kernel types OpenVINO's compiled video graphs run (``openvino_kernels``), and the ISA caps
  set in the environment (``isa_caps``: ``ONEDNN_MAX_CPU_ISA=AVX2`` and friends emulate an
  AVX2-only CPU on a bigger one, as far as each library honours them; the kernels say how far).

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

from vop.backbone.clip import build_clip
from vop.cpu import cpu_model, simd_flags
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

    return {"model": cpu_model(), "simd": simd_flags(), "cores": os.cpu_count(),
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


class Replay:
    """``encoder`` with a model that costs nothing: ``encode_prepared`` returns the video's vector
    encoded before (looked up by its thumbnail), so a build with it times decoding, preparing,
    writing the shards and building the index, and nothing else."""

    def __init__(self, encoder: VideoEncoder, encoded: dict):
        self.encoder, self.encoded = encoder, encoded

    def __getattr__(self, name):
        return getattr(self.encoder, name)

    def encode_prepared(self, prepared):
        return self.encoded[prepared.thumbnail]


def split(e2e_s: float, model_s: float, no_model_s: float, decode_prepare_s: float, threads: int,
          cores: int) -> dict:
    """Where one end-to-end build's time goes. ``model_s``: the model alone on every prepared video;
    ``no_model_s``: the same build with a model that costs nothing (decode, prepare, write, index);
    decoding and preparing alone take ``decode_prepare_s``. What the overlap hid is
    ``model_s + no_model_s - e2e_s``; the share of decoding it hid is that over ``decode_prepare_s``.
    ``core_bound_s``: the least time the cores allow when the model keeps ``threads`` of them busy
    and decoding needs one more, ``max(model_s, (model_s * threads + no_model_s) / cores)``."""
    hidden = model_s + no_model_s - e2e_s
    bound = max(model_s, (model_s * min(threads, cores) + no_model_s) / cores)
    return {"end_to_end_s": e2e_s, "model_s": model_s, "without_model_s": no_model_s,
            "decode_and_prepare_s": decode_prepare_s, "rest_s": no_model_s - decode_prepare_s,
            "overlap_hidden_s": hidden, "decode_hidden_share": hidden / decode_prepare_s,
            "core_bound_s": bound, "end_to_end_over_core_bound": e2e_s / bound}


ISA_CAPS = ("ONEDNN_MAX_CPU_ISA", "OV_CPU_MAX_ISA", "MKL_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY")


def kernels(encoder) -> dict[str, int]:
    """How many nodes of an OpenVINO encoder's compiled video graph run each kernel type (e.g.
    ``brgemm_avx512_amx_I8``): which instructions the run really used, under an ISA cap too."""
    from collections import Counter

    model = getattr(encoder.model, "_compiled", {}).get("video")
    if model is None:
        return {}
    found = Counter()
    for op in model.get_runtime_model().get_ops():
        info = op.get_rt_info()
        if "primitiveType" in info:
            found[info["primitiveType"].astype(str)] += 1
    return dict(found.most_common())


def timed_build(videos: Path, out: Path, encoder, decode_workers: int, expect: int, keep: bool = False) -> float:
    """Seconds of one ``vop index`` build of ``videos`` into the fresh folder ``out`` (removed
    afterwards unless ``keep``); every one of the ``expect`` videos must be encoded."""
    t = time.perf_counter()
    report = build_index(videos, out, encoder, progress=False, vector_index="exact", decode_workers=decode_workers)
    seconds = time.perf_counter() - t
    if report.encoded != expect:
        raise RuntimeError(f"encoded {report.encoded} of {expect} videos")
    if not keep:
        shutil.rmtree(out)
    return seconds


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
    ap.add_argument("--decode-workers", type=int, default=1, help="decode threads of every end-to-end build")
    ap.add_argument("--more-decode-workers", type=int, nargs="*", default=[2],
                    help="also time openvino int8's build with these decode worker counts")
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
              "cpu": cpu_info(), "isa_caps": {k: os.environ[k] for k in ISA_CAPS if k in os.environ},
              "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
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
        result["openvino_kernels"] = {v: kernels(enc[v]) for v in variants if v.startswith("openvino")}

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

        # ---- decoding alone, and decoding + preparing (resize, normalise, thumbnail): the decode workers' part
        t = time.perf_counter()
        for name in sorted(os.listdir(videos)):
            probe.decode(videos / name)
        result["decode_only_s"] = time.perf_counter() - t
        t = time.perf_counter()
        prepared = [probe.prepare(probe.decode(videos / name)) for name in sorted(os.listdir(videos))]
        result["decode_and_prepare_s"] = time.perf_counter() - t
        model_runs = {v: [] for v in variants}
        for r in range(args.repeats):  # the model alone on every video, as the build's main thread runs it
            for v in rotations(variants, r):
                t = time.perf_counter()
                encoded = {p.thumbnail: enc[v].encode_prepared(p) for p in prepared}
                model_runs[v].append(time.perf_counter() - t)
        model_s = {v: statistics.median(runs_v) for v, runs_v in model_runs.items()}

        # ---- end to end
        runs = {v: [] for v in variants}
        for r in range(args.repeats):
            for v in rotations(variants, r):  # the reference's last index is kept for the queries
                keep = r + 1 == args.repeats and v == REFERENCE
                runs[v].append(timed_build(videos, Path(tmp) / f"index-{v}-{r}", enc[v], args.decode_workers,
                                           len(used), keep))
        ref_e2e = statistics.median(runs[REFERENCE])
        result["end_to_end"] = {v: {"runs_s": s, "median_s": statistics.median(s),
                                    "videos_per_min": 60 * len(used) / statistics.median(s),
                                    "ratio": ref_e2e / statistics.median(s)} for v, s in runs.items()}
        for v in variants:
            e = result["end_to_end"][v]
            print(f"end to end {v}: {e['videos_per_min']:.1f} videos/min, {e['ratio']:.2f}x", flush=True)

        # ---- the split: the same build with a model that costs nothing, and with more decode workers
        replay = Replay(enc[REFERENCE], encoded)  # any variant's vectors: only their lookup is timed
        no_model = [timed_build(videos, Path(tmp) / f"index-replay-{r}", replay, args.decode_workers, len(used))
                    for r in range(args.repeats)]
        result["split"] = {v: split(result["end_to_end"][v]["median_s"], model_s[v], statistics.median(no_model),
                                    result["decode_and_prepare_s"], args.threads, os.cpu_count() or 1)
                           for v in variants}
        result["split_decode_workers"] = args.decode_workers
        for v in variants:
            x = result["split"][v]
            print(f"split {v}: end to end {x['end_to_end_s']:.2f} s = model {x['model_s']:.2f} + without model "
                  f"{x['without_model_s']:.2f} (decode+prepare {x['decode_and_prepare_s']:.2f}) - hidden "
                  f"{x['overlap_hidden_s']:.2f} ({100 * x['decode_hidden_share']:.0f}% of decoding hidden); the "
                  f"cores allow {x['core_bound_s']:.2f} s ({x['end_to_end_over_core_bound']:.2f}x of it)", flush=True)
        if args.more_decode_workers and "openvino-int8" in variants:
            more = {}
            for w in args.more_decode_workers:
                times_w = [timed_build(videos, Path(tmp) / f"index-workers-{w}-{r}", enc["openvino-int8"], w,
                                       len(used)) for r in range(args.repeats)]
                more[str(w)] = {"runs_s": times_w, "median_s": statistics.median(times_w)}
                print(f"end to end openvino-int8, {w} decode workers: {more[str(w)]['median_s']:.2f} s", flush=True)
            result["openvino_int8_decode_workers"] = more

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
