"""Quality of the OpenVINO runtime (``--runtime openvino``) against PyTorch fp32, per precision,
with ``--check`` failing (exit 1) when a threshold of issue 25 does not hold.

1. ViT-B/32 shapes, random weights (seed 0) with every parameter perturbed, on real videos (12
   frames each, decoded as ``vop index`` does), zero-shot: per-video cosine of openvino fp32 / bf16 /
   int8 to torch fp32 (min, median) and the largest |difference| of the unit vectors; text the same
   on captions. int8 is calibrated on the first ``--calibration-videos`` videos; its cosines are
   also given for the held-out rest. Thresholds: fp32 max |diff| <= 1e-4 (video and text), bf16
   min cosine >= 0.999, int8 min cosine >= 0.995. The worst layer of int8: each residual block
   quantized alone (everything else fp32), the one with the lowest min cosine (``--no-layers``
   skips this part, one quantization per block; the demo part does the same for its best adapter).
2. ``--demo-out DIR`` (a ``vop demo`` output folder, as ``benchmarks/int8_quality.py`` reads it):
   every seed-0 adapter on the demo world's test split, int8 calibrated on its validation split;
   t2v R@1 of torch fp32 and each openvino precision, and the top-10 overlap. The best trained
   adapter and the zero-shot backbone must have R@1 within 1.0 point and overlap >= 0.9.

    python benchmarks/runtime_quality.py [--videos DIR] [--demo-out DIR] [--threads 2] [--check]
        [--out benchmarks/results/runtime_quality.json]

3. ``--probe int8-settings``: each alternative int8 setting in :data:`PROBE` (changes to
   ``vop.runtime.openvino.INT8_SETTINGS``) on the random model and, with ``--demo-out``, the demo's
   ``--probe-runs``; the table goes under ``probe_int8_settings`` in ``--out``, other results kept.

On your own weights, compare ``vop eval --runtime openvino --precision int8`` with ``--runtime torch``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from int8_common import default_videos, finish, loadavg
from int8_quality import cosine_stats, top_overlap

from vop.cpu import cpu_model, simd_flags
from vop.runtime import prepare
from vop.runtime.calibration import Calibration
from vop.runtime.openvino import cpu_capabilities

FP32_MAX_DIFF = 1e-4
MIN_COSINE = {"bf16": 0.999, "int8": 0.995}
R1_DELTA_MAX = 1.0
OVERLAP_MIN = 0.9
CAPTIONS = ["a man is cooking pasta in a kitchen", "a dog runs on the beach", "two people play tennis",
            "a car drives through a city at night", "someone pours a glass of water", "x",
            "a very long caption about a person who walks slowly along a crowded street in the rain at dusk"]


def precisions() -> list[str]:
    return ["fp32", "int8"] + (["bf16"] if "BF16" in cpu_capabilities() else [])


def in_memory_calibration(videos: list[torch.Tensor], what: str) -> Calibration:
    import hashlib

    h = hashlib.sha256(b"".join(v.numpy().tobytes()[:4096] for v in videos)).hexdigest()
    return Calibration(h, len(videos), what, lambda: list(videos))


@torch.no_grad()
def random_inputs(videos_dir: Path, limit: int):
    """The perturbed random ViT-B/32 zero-shot model and up to ``limit`` decoded videos ``[N, F, 3, S, S]``."""
    sys.path.insert(0, str(Path(__file__).parent))
    from index_throughput import perturbed_clip
    from int8_common import decoded_clips

    from vop.index.encoder import VideoEncoder
    from vop.model import build_model

    clip = perturbed_clip("ViT-B-32")
    ref = build_model(clip, "zeroshot", frames=12)
    clips, used = decoded_clips(VideoEncoder(clip, ref, "random ViT-B-32"), videos_dir, limit)
    return ref, torch.stack(clips), used  # [N, F, 3, S, S]


@torch.no_grad()
def random_weights_part(videos_dir: Path, limit: int, n_calib: int, layers: bool = True) -> dict:
    from vop.backbone.tokenizer import tokenize

    ref, video, used = random_inputs(videos_dir, limit)

    def each(model):  # one video at a time, as vop index runs
        return torch.cat([model.encode_video(v[None]) for v in video])

    tokens = tokenize(CAPTIONS)
    a_v, a_t = each(ref), ref.encode_text(tokens)
    out = {"backbone": "ViT-B-32 shapes, random weights (seed 0), every parameter perturbed", "videos": used,
           "calibration_videos": used[:n_calib]}
    calibration = in_memory_calibration(list(video[:n_calib]), f"first {n_calib} of the videos")
    for p in precisions():
        ov = prepare(ref, "openvino", p, calibration=calibration if p == "int8" else None)
        b_v = each(ov)
        b_t = ov.encode_text(tokens)
        row = {"video_cosine": cosine_stats(a_v, b_v), "text_cosine": cosine_stats(a_t, b_t),
               "video_max_abs_diff": float((a_v - b_v).abs().max()), "text_max_abs_diff": float((a_t - b_t).abs().max()),
               "text_precision": ov.graph_precision("text")}
        if p == "int8" and len(video) > n_calib:
            row["video_cosine_held_out"] = cosine_stats(a_v[n_calib:], b_v[n_calib:])
        if p == "int8" and layers:
            row.update(one_layer_at_a_time(ref, calibration, a_v, each, "random ViT-B/32"))
        out[p] = row
        print(f"random ViT-B/32 openvino {p}: video cosine min {row['video_cosine']['min']:.6f} median "
              f"{row['video_cosine']['median']:.6f}, max |diff| {row['video_max_abs_diff']:.2e}; text cosine min "
              f"{row['text_cosine']['min']:.6f}, max |diff| {row['text_max_abs_diff']:.2e}", flush=True)
    return out


@torch.no_grad()
def one_layer_at_a_time(ref, calibration: Calibration, a_v: torch.Tensor, encode, what: str) -> dict:
    """The int8 error each residual block of the image tower causes on its own: the video graph with
    that block's matrix products quantized (INT8_SETTINGS' ``only_layer``), everything else fp32;
    per-video cosine (``encode(model)``: the videos' vectors) to torch fp32's ``a_v``. Returns
    ``one_layer_at_a_time`` (a row per block) and ``worst_layer``, the block with the lowest minimum."""
    from vop.runtime.openvino import OpenVINOModel

    rows = []
    for i in range(ref.clip.cfg.vision.layers):
        with tempfile.TemporaryDirectory() as cache:  # a ViT-B/32 graph per block: not kept
            ov = OpenVINOModel(ref, "int8", calibration, cache_dir=cache, int8_settings={"only_layer": f"block {i}"})
            b_v = encode(ov)
            del ov
        rows.append({"layer": f"block {i}", "video_cosine": cosine_stats(a_v, b_v)})
        print(f"{what} openvino int8, block {i} alone: video cosine min {rows[-1]['video_cosine']['min']:.6f} "
              f"median {rows[-1]['video_cosine']['median']:.6f}", flush=True)
    worst = min(rows, key=lambda r: r["video_cosine"]["min"])["layer"]
    return {"one_layer_at_a_time": rows, "worst_layer": worst}


@torch.no_grad()
def demo_part(demo_out: Path, n_calib: int, only_precisions=None, int8_settings: dict | None = None,
              runs_only: tuple[str, ...] = (), layers: bool = False) -> dict:
    from vop.adapter import META_FILE, backbone_ref, load_adapter, read_metadata
    from vop.backbone.reference import resolve_backbone
    from vop.data.annotations import load_records
    from vop.eval.retrieval import build_queries, encode_texts, encode_videos, metrics_from_embeddings
    from vop.runtime.calibration import from_records

    worlds = sorted(demo_out.glob("world-*/metadata.json"))
    data = worlds[0].parent if worlds else demo_out / "data"
    runs = demo_out / data.name.replace("world", "runs") if worlds else demo_out / "runs"
    adapters = sorted(p.parent for p in runs.glob("*-seed0/adapter/adapter.json"))
    if runs_only:
        adapters = [a for a in adapters if a.parent.name in runs_only]
    if not adapters:
        raise SystemExit(f"runtime_quality: no {runs}/*-seed0/adapter under {demo_out}")
    records = load_records("csv", data, split="test", videos_dir=data)
    val = load_records("csv", data, split="val", videos_dir=data)
    queries = build_queries(records)
    rows, models = [], {}
    cpu = torch.device("cpu")
    for adapter in adapters:
        meta = read_metadata(adapter)
        clip = resolve_backbone(backbone_ref(meta), recorded_in=adapter / META_FILE)
        ref = load_adapter(adapter, clip)
        size = clip.cfg.vision.image_size
        calibration = from_records(val, ref.frames, size, n_calib, split="val")

        def run(model, size=size):  # this adapter's image size (bound now, not at the loop's end)
            v, _ = encode_videos(model, records, size, 64, cpu, on_error="raise", progress=False)
            t = encode_texts(model, queries.texts, 64, cpu, progress=False)
            return v, t, metrics_from_embeddings(t, v, queries)

        va, ta, ma = run(ref)
        row = {"run": adapter.parent.name, "method": meta["method"], "videos": len(va), "queries": len(ta),
               "t2v_r1_torch_fp32": ma["t2v"]["R@1"]}
        for p in only_precisions or precisions():
            from vop.runtime.openvino import OpenVINOModel

            vb, tb, mb = run(OpenVINOModel(ref, p, calibration if p == "int8" else None, int8_settings=int8_settings))
            row[p] = {"t2v_r1": mb["t2v"]["R@1"], "t2v_r1_delta": mb["t2v"]["R@1"] - ma["t2v"]["R@1"],
                      "top10_overlap": top_overlap(ta @ va.t(), tb @ vb.t(), 10),
                      "video_cosine": cosine_stats(va, vb), "text_cosine": cosine_stats(ta, tb)}
            print(f"demo {row['run']:<18} openvino {p}: t2v R@1 {mb['t2v']['R@1']:.2f} vs {ma['t2v']['R@1']:.2f}, "
                  f"top-10 overlap {row[p]['top10_overlap']:.4f}, video cosine min "
                  f"{row[p]['video_cosine']['min']:.6f}", flush=True)
        rows.append(row)
        models[row["run"]] = (ref, calibration, va, run)
    trained = [r for r in rows if r["method"] != "zeroshot"] or rows
    best = max(trained, key=lambda r: r["t2v_r1_torch_fp32"])
    if layers and "int8" in best:
        ref, calibration, va, run = models[best["run"]]
        best["int8"].update(one_layer_at_a_time(ref, calibration, va, lambda m: run(m)[0], f"demo {best['run']}"))
    return {"demo_out": str(demo_out), "runs": rows, "best_trained": best["run"]}


# --probe int8-settings: alternatives to vop.runtime.openvino.INT8_SETTINGS, each measured the same way
PROBE = {
    "default (vop.runtime.openvino.INT8_SETTINGS)": {},
    "previous default (SmoothQuant 0.5)": {"smooth_quant": 0.5, "keep_fp32": ()},
    "SmoothQuant off": {"smooth_quant": None, "keep_fp32": ()},
    "SmoothQuant 0.95 (NNCF default)": {"smooth_quant": 0.95, "keep_fp32": ()},
    "SmoothQuant 0.25": {"smooth_quant": 0.25, "keep_fp32": ()},
    "patch embedding fp32": {"keep_fp32": ("patch",), "smooth_quant": 0.5},
    "output projection fp32": {"keep_fp32": ("head",), "smooth_quant": 0.5},
    "patch + projection fp32": {"keep_fp32": ("patch", "head"), "smooth_quant": 0.5},
    "patch + projection fp32, SmoothQuant off": {"keep_fp32": ("patch", "head"), "smooth_quant": None},
    "fast_bias_correction off": {"fast_bias_correction": False, "keep_fp32": (), "smooth_quant": 0.5},
    "patch + projection + MLP outputs fp32": {"keep_fp32": ("patch", "head", "mlp_out"), "smooth_quant": 0.5},
    "patch + projection fp32, 32 calibration videos (demo)": {"keep_fp32": ("patch", "head"), "smooth_quant": 0.5,
                                                              "calibration_videos": 32},
    "no transformer model type, mixed preset": {"model_type": None, "preset": "mixed", "keep_fp32": (),
                                                "smooth_quant": 0.5},
}


@torch.no_grad()
def probe_int8(videos_dir: Path | None, limit: int, n_calib: int, demo_out: Path | None, names: list[str],
               demo_runs: tuple[str, ...] = ()) -> dict:
    """Each :data:`PROBE` setting: random ViT-B/32 per-video cosine (and the int8 encoder's time for the
    videos, one at a time, against torch fp32's in the same loop), and with ``demo_out`` the demo's
    zero-shot and best trained adapter (R@1 delta, top-10 overlap)."""
    import time

    from vop.runtime.openvino import OpenVINOModel

    rows = {name: {"settings": PROBE[name]} for name in names}
    if videos_dir is not None:
        ref, video, _ = random_inputs(videos_dir, limit)
        ref.encode_video(video[:1])  # warm-up
        start = time.perf_counter()
        a_v = torch.cat([ref.encode_video(v[None]) for v in video])
        torch_s = time.perf_counter() - start
        calibration = in_memory_calibration(list(video[:n_calib]), f"first {n_calib} of the videos")
        for name in names:
            if "calibration_videos" in PROBE[name]:
                continue  # a demo-only row (the random part has 8 videos in all)
            ov = OpenVINOModel(ref, "int8", calibration, int8_settings=PROBE[name])
            ov.prepare("video")
            ov.encode_video(video[:1])  # warm-up
            start = time.perf_counter()
            b_v = torch.cat([ov.encode_video(v[None]) for v in video])
            secs = time.perf_counter() - start
            rows[name]["random"] = {"video_cosine": cosine_stats(a_v, b_v),
                                    "video_cosine_held_out": cosine_stats(a_v[n_calib:], b_v[n_calib:]),
                                    "encode_s": secs, "torch_fp32_encode_s": torch_s, "speedup": torch_s / secs}
            print(f"probe {name:<42} random: cosine min {rows[name]['random']['video_cosine']['min']:.5f} median "
                  f"{rows[name]['random']['video_cosine']['median']:.5f}, encoder {torch_s / secs:.2f}x", flush=True)
            del ov
    if demo_out is not None:
        for name in names:
            settings = dict(PROBE[name])
            d = demo_part(demo_out, settings.pop("calibration_videos", 8), only_precisions=["int8"],
                          int8_settings=settings, runs_only=demo_runs)
            rows[name]["demo"] = {r["run"]: {"t2v_r1_delta": r["int8"]["t2v_r1_delta"],
                                             "top10_overlap": r["int8"]["top10_overlap"],
                                             "video_cosine_min": r["int8"]["video_cosine"]["min"]}
                                  for r in d["runs"]}
            print(f"probe {name:<42} demo: " + ", ".join(f"{k} overlap {v['top10_overlap']:.3f} R@1 delta "
                  f"{v['t2v_r1_delta']:+.2f}" for k, v in rows[name]["demo"].items()), flush=True)
    return {"calibration_videos": n_calib, "rows": rows}


def checks(result: dict) -> list[str]:
    failed = []
    r = result.get("random")
    if r:
        for side in ("video", "text"):
            d = r["fp32"][f"{side}_max_abs_diff"]
            if d > FP32_MAX_DIFF:
                failed.append(f"random ViT-B/32 openvino fp32: {side} max |diff| {d:.2e} > {FP32_MAX_DIFF}")
        for p, lo in MIN_COSINE.items():
            if p in r and r[p]["video_cosine"]["min"] < lo:
                failed.append(f"random ViT-B/32 openvino {p}: min video cosine {r[p]['video_cosine']['min']:.6f} < {lo}")
    d = result.get("demo")
    if d:
        for row in d["runs"]:
            if row["run"] != d["best_trained"] and row["method"] != "zeroshot":
                continue
            for p in precisions():
                if abs(row[p]["t2v_r1_delta"]) > R1_DELTA_MAX:
                    failed.append(f"demo {row['run']} openvino {p}: t2v R@1 {row[p]['t2v_r1']:.2f} vs "
                                  f"{row['t2v_r1_torch_fp32']:.2f}, more than {R1_DELTA_MAX} apart")
                if row[p]["top10_overlap"] < OVERLAP_MIN:
                    failed.append(f"demo {row['run']} openvino {p}: top-10 overlap {row[p]['top10_overlap']:.4f} "
                                  f"< {OVERLAP_MIN}")
    return failed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=Path, default=None)
    ap.add_argument("--max-videos", type=int, default=8)
    ap.add_argument("--calibration-videos", type=int, default=4)
    ap.add_argument("--no-random", action="store_true")
    ap.add_argument("--no-layers", action="store_true", help="skip int8's one-block-at-a-time part (worst layer)")
    ap.add_argument("--demo-out", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--probe", choices=["int8-settings"], help="compare the int8 settings of PROBE (random "
                    "ViT-B/32 and, with --demo-out, the demo's zero-shot and --probe-runs adapters) and store the "
                    "table under 'probe_int8_settings' in --out, keeping the file's other results")
    ap.add_argument("--probe-settings", nargs="*", default=None, help="names from PROBE (default: all)")
    ap.add_argument("--probe-runs", nargs="*", default=["zeroshot-seed0", "vop-p-seed0"])
    ap.add_argument("--out", default="benchmarks/results/runtime_quality.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import openvino

    result: dict = {"cpu": cpu_model(), "simd": simd_flags(), "threads": args.threads, "openvino": openvino.__version__, "loadavg_before": loadavg(),
                    "thresholds": {"fp32_max_abs_diff": FP32_MAX_DIFF, "min_cosine": MIN_COSINE,
                                   "t2v_r1_delta": R1_DELTA_MAX, "top10_overlap": OVERLAP_MIN}}
    if args.probe:
        import json

        with tempfile.TemporaryDirectory() as tmp:
            os.environ["VOP_OPENVINO_CACHE"] = tmp
            videos = None if args.no_random else (args.videos or default_videos())
            probe = probe_int8(videos, args.max_videos, args.calibration_videos, args.demo_out,
                               args.probe_settings or list(PROBE), tuple(args.probe_runs))
        probe.update(threads=args.threads, loadavg_before=result["loadavg_before"], loadavg_after=loadavg())
        out = Path(args.out)
        stored = json.loads(out.read_text()) if out.is_file() else {}
        stored["probe_int8_settings"] = probe
        out.write_text(json.dumps(stored, indent=2) + "\n")
        print(f"wrote {out} (probe_int8_settings)")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["VOP_OPENVINO_CACHE"] = tmp
        if not args.no_random:
            videos = args.videos or default_videos()
            if videos is None:
                raise SystemExit("runtime_quality: no videos; pass --videos DIR")
            result["random"] = random_weights_part(videos, args.max_videos, args.calibration_videos,
                                                   layers=not args.no_layers)
        if args.demo_out:
            result["demo"] = demo_part(args.demo_out, 8, layers=not args.no_layers)
    result["loadavg_after"] = loadavg()
    stored = Path(args.out)
    if stored.is_file():  # the --probe table is another invocation's result: kept
        import json

        probe = json.loads(stored.read_text()).get("probe_int8_settings")
        if probe is not None:
            result["probe_int8_settings"] = probe
    return finish(result, args.out, checks(result), args.check)


if __name__ == "__main__":
    sys.exit(main())
