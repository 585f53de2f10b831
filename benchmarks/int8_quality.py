"""int8 vs fp32 quality of the frozen backbone (``vop.backbone.quantize``): the numbers behind
``--precision int8``, with ``--check`` failing (exit 1) when a stated threshold does not hold.

1. Random ViT-B/32 weights (seed 0) on real videos (12 frames each, decoded as ``vop index``
   does): per-video embedding cosine int8 vs fp32 (min, median; threshold: min >= 0.999), text
   embedding cosine on captions, and the linear layer with the largest relative output error.
2. ``--demo-out DIR`` (a ``vop demo`` output folder: ``runs-<world>/<method>-seed0/adapter`` and
   ``data/``): every trained adapter on the demo's test split, fp32 against int8 -- t2v R@1 of
   both, per-video cosine, and the top-10 overlap (the share of each text query's fp32 top 10
   that int8 also returns). The best trained adapter (highest fp32 t2v R@1, zeroshot excluded)
   must have R@1 within 0.5 points of fp32, top-10 overlap >= 0.95 and min cosine >= 0.999.

    python benchmarks/int8_quality.py [--videos DIR] [--demo-out DIR] [--threads 2] [--check]
        [--out benchmarks/results/int8_quality.json]

On your own weights, compare ``vop eval --precision int8`` with ``--precision fp32``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP workers sleep: spinning ones steal a shared CPU

import argparse
import copy
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from int8_common import decoded_clips, default_videos, finish

from vop.backbone.clip import CLIP, build_clip
from vop.backbone.quantize import Int8Linear, int8_layers, quantize_model

COSINE_MIN = 0.999
R1_DELTA_MAX = 0.5
OVERLAP_MIN = 0.95
TOP = 10
CAPTIONS = ["a man is cooking pasta in a kitchen", "a dog runs on the beach", "two people play tennis",
            "a car drives through a city at night", "someone pours a glass of water"]


def fp32_linear(clip: CLIP, name: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Weight and bias of the fp32 layer ``name`` (as :func:`vop.backbone.quantize._linears` names it)."""
    owner_name, _, attr = name.rpartition(".")
    owner = clip.get_submodule(owner_name)
    if attr == "in_proj":
        return owner.in_proj_weight, owner.in_proj_bias
    layer = getattr(owner, attr)
    return layer.weight, layer.bias


class LayerErrors:
    """Forward hooks on every int8 layer: the largest relative error ||y - y_fp32|| / ||y_fp32|| of
    each, where y_fp32 is the fp32 layer applied to the same input."""

    def __init__(self, model, fp32_clip: CLIP):
        self.worst: dict[str, float] = {}
        self.handles = []
        for layer in int8_layers(model):
            w, b = fp32_linear(fp32_clip, layer.name)
            self.handles.append(layer.register_forward_hook(self._hook(layer, w, b)))

    def _hook(self, layer: Int8Linear, w, b):
        def hook(_module, inputs, output):
            ref = F.linear(inputs[0].float(), w, b)
            err = float((output - ref).norm() / ref.norm().clamp_min(1e-12))
            self.worst[layer.name] = max(err, self.worst.get(layer.name, 0.0))
        return hook

    def close(self) -> dict:
        for h in self.handles:
            h.remove()
        if not self.worst:  # every linear layer kept fp32 (e.g. `full` trains them all): nothing quantized
            return {"largest_error_layer": None, "largest_relative_error": 0.0, "median_layer_relative_error": 0.0}
        name = max(self.worst, key=self.worst.get)
        return {"largest_error_layer": name, "largest_relative_error": self.worst[name],
                "median_layer_relative_error": statistics.median(self.worst.values())}


def cosine_stats(a: torch.Tensor, b: torch.Tensor) -> dict:
    cos = F.cosine_similarity(a.float(), b.float(), dim=-1).tolist()
    return {"min": min(cos), "median": statistics.median(cos), "count": len(cos)}


def int8_copy(model, per_token: bool):
    q = copy.deepcopy(model)
    quantize_model(q)
    for layer in int8_layers(q):
        layer.per_token = per_token
    return q


@torch.no_grad()
def random_weights_part(videos_dir: Path, limit: int, per_token: bool) -> dict:
    from vop.index.encoder import VideoEncoder
    from vop.model import build_model

    clip = build_clip("ViT-B-32", seed=0)
    fp32 = build_model(clip, "zeroshot", frames=12)
    q = int8_copy(fp32, per_token)
    clips, used = decoded_clips(VideoEncoder(clip, fp32, "random ViT-B-32 (seed 0)"), videos_dir, limit)
    if not clips:
        raise SystemExit(f"int8_quality: no decodable video under {videos_dir}")
    errors = LayerErrors(q, clip)
    a = torch.cat([fp32.encode_video(v[None]) for v in clips])
    b = torch.cat([q.encode_video(v[None]) for v in clips])
    layer = errors.close()
    from vop.backbone.tokenizer import tokenize

    tokens = tokenize(CAPTIONS)
    return {"backbone": "ViT-B-32, random weights (seed 0)", "videos": used,
            "video_cosine": cosine_stats(a, b), "text_cosine": cosine_stats(fp32.encode_text(tokens),
                                                                            q.encode_text(tokens)),
            **layer}


def top_overlap(s_a: torch.Tensor, s_b: torch.Tensor, k: int) -> float:
    """Mean over queries of |top-k(a) & top-k(b)| / k (rows are queries)."""
    k = min(k, s_a.shape[1])
    ta, tb = s_a.topk(k, dim=1).indices, s_b.topk(k, dim=1).indices
    return float(sum(len(set(x.tolist()) & set(y.tolist())) for x, y in zip(ta, tb)) / (k * len(ta)))


@torch.no_grad()
def demo_part(demo_out: Path, per_token: bool) -> dict:
    from vop.adapter import META_FILE, backbone_ref, load_adapter, read_metadata
    from vop.backbone.reference import resolve_backbone
    from vop.data.annotations import load_records
    from vop.eval.retrieval import build_queries, encode_texts, encode_videos, metrics_from_embeddings

    worlds = sorted(demo_out.glob("world-*/metadata.json"))
    data = worlds[0].parent if worlds else demo_out / "data"  # the world of the first data seed
    runs = demo_out / data.name.replace("world", "runs") if worlds else demo_out / "runs"
    adapters = sorted(p.parent for p in runs.glob("*-seed0/adapter/adapter.json"))
    if not adapters:
        raise SystemExit(f"int8_quality: no {runs}/*-seed0/adapter under {demo_out}")
    records = load_records("csv", data, split="test", videos_dir=data)
    queries = build_queries(records)
    rows = []
    for adapter in adapters:
        meta = read_metadata(adapter)
        clip = resolve_backbone(backbone_ref(meta), recorded_in=adapter / META_FILE)
        fp32 = load_adapter(adapter, clip)
        q = int8_copy(fp32, per_token)
        size = clip.cfg.vision.image_size
        emb = {}
        errors = LayerErrors(q, fp32.clip)
        for name, model in (("fp32", fp32), ("int8", q)):
            v, _kept = encode_videos(model, records, size, 64, torch.device("cpu"), on_error="raise", progress=False)
            t = encode_texts(model, queries.texts, 64, torch.device("cpu"), progress=False)
            emb[name] = (v, t, metrics_from_embeddings(t, v, queries))
        layer = errors.close()
        (va, ta, ma), (vb, tb, mb) = emb["fp32"], emb["int8"]
        rows.append({
            "run": adapter.parent.name, "method": meta["method"], "videos": len(va), "queries": len(ta),
            "t2v_r1_fp32": ma["t2v"]["R@1"], "t2v_r1_int8": mb["t2v"]["R@1"],
            "t2v_r1_delta": mb["t2v"]["R@1"] - ma["t2v"]["R@1"],
            "v2t_r1_fp32": ma["v2t"]["R@1"], "v2t_r1_int8": mb["v2t"]["R@1"],
            "top10_overlap": top_overlap(ta @ va.t(), tb @ vb.t(), TOP),
            "video_cosine": cosine_stats(va, vb), "text_cosine": cosine_stats(ta, tb), **layer,
        })
    trained = [r for r in rows if r["method"] != "zeroshot"] or rows
    best = max(trained, key=lambda r: r["t2v_r1_fp32"])
    return {"demo_out": str(demo_out), "runs": rows, "best_trained": best["run"]}


def checks(result: dict) -> list[str]:
    failed = []
    if "random" in result:
        c = result["random"]["video_cosine"]["min"]
        if c < COSINE_MIN:
            failed.append(f"random ViT-B/32: min video cosine {c:.6f} < {COSINE_MIN}")
    if "demo" in result:
        best = next(r for r in result["demo"]["runs"] if r["run"] == result["demo"]["best_trained"])
        if abs(best["t2v_r1_delta"]) > R1_DELTA_MAX:
            failed.append(f"demo {best['run']}: t2v R@1 {best['t2v_r1_int8']:.2f} (int8) vs "
                          f"{best['t2v_r1_fp32']:.2f} (fp32), more than {R1_DELTA_MAX} points apart")
        if best["top10_overlap"] < OVERLAP_MIN:
            failed.append(f"demo {best['run']}: top-10 overlap {best['top10_overlap']:.4f} < {OVERLAP_MIN}")
        if best["video_cosine"]["min"] < COSINE_MIN:
            failed.append(f"demo {best['run']}: min video cosine {best['video_cosine']['min']:.6f} < {COSINE_MIN}")
    return failed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=Path, default=None, help="real videos for part 1 (default: "
                    "tests/data/videos, else /work/shared/data/videos)")
    ap.add_argument("--max-videos", type=int, default=8)
    ap.add_argument("--no-random", action="store_true", help="skip part 1 (random ViT-B/32)")
    ap.add_argument("--demo-out", type=Path, help="a `vop demo` output folder (part 2)")
    ap.add_argument("--per-token", choices=("on", "off"), default=None,
                    help="override the activation scales (default: what vop ships)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--check", action="store_true", help="exit 1 when a threshold does not hold")
    ap.add_argument("--out", default="benchmarks/results/int8_quality.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    per_token = Int8Linear.per_token if args.per_token is None else args.per_token == "on"
    result: dict = {"per_token_activation_scales": per_token, "threads": args.threads,
                    "thresholds": {"min_cosine": COSINE_MIN, "t2v_r1_delta": R1_DELTA_MAX, "top10_overlap": OVERLAP_MIN}}
    if not args.no_random:
        videos = args.videos or default_videos()
        if videos is None:
            raise SystemExit("int8_quality: no videos; pass --videos DIR")
        result["random"] = random_weights_part(videos, args.max_videos, per_token)
        r = result["random"]
        print(f"random ViT-B/32, {r['video_cosine']['count']} videos: video cosine min {r['video_cosine']['min']:.6f} "
              f"median {r['video_cosine']['median']:.6f}; text cosine min {r['text_cosine']['min']:.6f}; "
              f"largest layer error {r['largest_relative_error']:.4f} at {r['largest_error_layer']}")
    if args.demo_out:
        result["demo"] = demo_part(args.demo_out, per_token)
        for r in result["demo"]["runs"]:
            print(f"demo {r['run']:<18} t2v R@1 fp32 {r['t2v_r1_fp32']:5.2f} int8 {r['t2v_r1_int8']:5.2f} "
                  f"(delta {r['t2v_r1_delta']:+.2f}), top-10 overlap {r['top10_overlap']:.4f}, video cosine min "
                  f"{r['video_cosine']['min']:.6f} median {r['video_cosine']['median']:.6f}, text cosine min "
                  f"{r['text_cosine']['min']:.6f}; largest layer error {r['largest_relative_error']:.4f} at "
                  f"{r['largest_error_layer']}")
        print(f"best trained adapter (fp32 t2v R@1): {result['demo']['best_trained']}")
    return finish(result, args.out, checks(result), args.check)


if __name__ == "__main__":
    sys.exit(main())
