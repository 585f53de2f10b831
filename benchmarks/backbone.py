"""Our CLIP vs transformers' CLIPModel: same ViT-B/32 weights, same inputs, same threads, one run.

Workload (one VoP training/eval step's encoder work): 12 frames at 224 px through the image
encoder and 12 captions (77 tokens) through the text encoder, fp32 on CPU, inference mode.
Both models are timed alternately in every repeat so that load from other processes on a
shared machine hits both alike; the best time of the repeats (least disturbed) is the headline,
medians are reported next to it. Achieved GFLOP/s is set against a large
sgemm measured on the same machine and threads (roughly the CPU's practical limit).

    python benchmarks/backbone.py [--threads 1 2] [--repeats 7] [--out benchmarks/results/backbone.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from vop.backbone.clip import CLIPConfig, get_config
from vop.backbone.formats.hf import config_to_hf, hf_to_openai
from vop.backbone.loading import build_from_state_dict
from vop.backbone.tokenizer import tokenize
from vop.cpu import cpu_model, simd_flags

FRAMES = 12
CAPTIONS = [f"a person is doing thing number {i} in a kitchen with a dog" for i in range(12)]


def hf_model(cfg: CLIPConfig, seed: int):
    """transformers CLIPModel with ViT-B/32 sizes and random weights (its own init)."""
    import transformers

    torch.manual_seed(seed)
    config = transformers.CLIPConfig(**config_to_hf(cfg))
    return transformers.CLIPModel(config).eval()


def transformer_flops(n: int, length: int, width: int, layers: int) -> float:
    """Multiply-add FLOPs (2 per MAC) of ``layers`` CLIP blocks on ``n`` sequences of ``length`` tokens."""
    linear = 12 * width * width * length  # qkv 3D^2 + out D^2 + mlp 8D^2, per token
    attention = 2 * length * length * width  # QK^T and AV (full square; the causal half is not skipped)
    return 2 * n * layers * (linear + attention)


def image_flops(cfg: CLIPConfig, images: int) -> float:
    v = cfg.vision
    patch = 2 * images * v.num_patches * 3 * v.patch_size**2 * v.width  # conv1
    return (
        transformer_flops(images, v.num_patches + 1, v.width, v.layers)
        + patch
        + 2 * images * v.width * cfg.embed_dim
    )


def text_flops(cfg: CLIPConfig, texts: int, length: int) -> float:
    t = cfg.text
    return transformer_flops(texts, length, t.width, t.layers) + 2 * texts * t.width * cfg.embed_dim


SGEMM_N = 2048


def sgemm_gflops(n: int = SGEMM_N, repeats: int = 5) -> float:
    """Best-of-``repeats`` fp32 ``[n, n] @ [n, n]``: the practical matmul limit of these threads."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return 2 * n**3 / min(times) / 1e9


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start




def build(seed: int = 0):
    """Both models with the same ViT-B/32 random weights, and the inputs."""
    cfg = get_config("ViT-B-32")
    theirs = hf_model(cfg, seed=seed)
    ours = build_from_state_dict(hf_to_openai(theirs.state_dict()), cfg, origin="transformers CLIPModel")
    images = torch.randn(FRAMES, 3, 224, 224, generator=torch.Generator().manual_seed(seed + 1))
    return cfg, ours, theirs, images, tokenize(CAPTIONS)


def measure(runs: dict, warmup: int, repeats: int) -> dict:
    """Seconds per call, ``{model: {part: [t, ...]}}``; models alternate inside every repeat."""
    times = {name: {part: [] for part in parts} for name, parts in runs.items()}
    names = list(runs)
    with torch.inference_mode():
        for i in range(warmup + repeats):
            # alternate models, rotating who goes first, so background load hits all alike
            for name in names[i % len(names) :] + names[: i % len(names)]:
                for part, fn in runs[name].items():
                    t = timed(fn)
                    if i >= warmup:
                        times[name][part].append(t)
    return times


def summarise(times: dict, flops: dict, gemm: float) -> dict:
    models = {}
    for name, parts in times.items():
        totals = [a + b for a, b in zip(parts["image"], parts["text"])]
        med = {
            **{part: statistics.median(ts) for part, ts in parts.items()},
            "total": statistics.median(totals),
        }
        best = {**{part: min(ts) for part, ts in parts.items()}, "total": min(totals)}
        f = flops[name]
        models[name] = {
            "min_s": best,
            "median_s": med,
            "all_s": parts,
            "gflop": {k: v / 1e9 for k, v in f.items()},
            "image_gflops": f["image"] / best["image"] / 1e9,
            "total_gflops": (f["image"] + f["text"]) / best["total"] / 1e9,
            "image_fraction_of_sgemm": f["image"] / best["image"] / 1e9 / gemm,
        }
    return models


def report(result: dict) -> None:
    print(
        f"\n== threads {result['threads']}, sgemm {result['sgemm_gflops']:.1f} GFLOP/s, "
        f"load avg {result['load_avg_before'][0]:.2f} -> {result['load_avg_after'][0]:.2f}"
    )
    diffs = result["max_abs_diff_normalised"]
    print(f"max |diff| of normalised embeddings: image {diffs['image']:.1e}, text {diffs['text']:.1e}")
    tok = result["text_tokens"]
    print(f"text tokens: {tok['full']} (ours cuts to the longest caption: {tok['trimmed']})")
    print("seconds per call, best of the repeats (median in brackets); GFLOP/s and % of sgemm from the best")
    print(f"{'':22}{'image s':>16}{'text s':>16}{'total s':>16}{'img GF/s':>9}{'% sgemm':>8}")
    for name, r in result["models"].items():
        b, m = r["min_s"], r["median_s"]
        cells = "".join(f"{b[p]:7.3f} ({m[p]:5.2f})" for p in ("image", "text", "total"))
        print(f"{name:22}{cells}{r['image_gflops']:9.1f}{100 * r['image_fraction_of_sgemm']:8.1f}")
    for ref in REFERENCES:
        for stat in ("min", "median"):
            ratio = result[f"ratio_ours_over_{ref}"][stat]
            print(
                f"ratio ours/{ref} ({stat}): image {ratio['image']:.3f}, text {ratio['text']:.3f}, "
                f"total {ratio['total']:.3f}"
            )


REFERENCES = ("transformers", "transformers_trimmed")


def run_threads(threads: int, models, warmup: int, repeats: int) -> dict:
    """The whole comparison at one thread count (both libraries use the same)."""
    torch.set_num_threads(threads)
    cfg, ours, theirs, images, tokens = models
    # Ours cuts the padding after the batch's last EOT (exact under the causal mask); the
    # "trimmed" row gives transformers the same shortened ids, as padding="longest" would.
    length = int(tokens.argmax(dim=-1).max()) + 1
    trimmed = tokens[:, :length]  # [12, length]
    hf_image = lambda: theirs.get_image_features(pixel_values=images).pooler_output
    runs = {
        "ours": {"image": lambda: ours.encode_image(images), "text": lambda: ours.encode_text(tokens)},
        "transformers": {
            "image": hf_image,
            "text": lambda: theirs.get_text_features(input_ids=tokens).pooler_output,
        },
        "transformers_trimmed": {
            "image": hf_image,
            "text": lambda: theirs.get_text_features(input_ids=trimmed).pooler_output,
        },
    }
    with torch.inference_mode():
        diffs = {
            part: (
                F.normalize(runs["ours"][part](), dim=-1) - F.normalize(runs["transformers"][part](), dim=-1)
            )
            .abs()
            .max()
            .item()
            for part in ("image", "text")
        }
    load_before = os.getloadavg()
    times = measure(runs, warmup, repeats)
    gemm = sgemm_gflops()
    load_after = os.getloadavg()

    img = image_flops(cfg, FRAMES)
    flops = {
        "ours": {"image": img, "text": text_flops(cfg, len(CAPTIONS), length)},
        "transformers": {"image": img, "text": text_flops(cfg, len(CAPTIONS), tokens.shape[1])},
        "transformers_trimmed": {"image": img, "text": text_flops(cfg, len(CAPTIONS), length)},
    }
    result = {
        "threads": threads,
        "load_avg_before": load_before,
        "load_avg_after": load_after,
        "sgemm_gflops": gemm,
        "max_abs_diff_normalised": diffs,
        "text_tokens": {"full": tokens.shape[1], "trimmed": length},
        "models": summarise(times, flops, gemm),
    }
    for ref in REFERENCES:
        result[f"ratio_ours_over_{ref}"] = {
            stat: {
                part: result["models"]["ours"][f"{stat}_s"][part] / result["models"][ref][f"{stat}_s"][part]
                for part in ("image", "text", "total")
            }
            for stat in ("min", "median")
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[1, torch.get_num_threads()],
        help="thread counts to compare at (default: 1 and all)",
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "backbone.json"))
    args = parser.parse_args()

    models = build()
    result = {
        "workload": f"ViT-B-32 random weights, {FRAMES} frames 224px + {len(CAPTIONS)} captions "
        f"(tokenized to 77), fp32, inference_mode",
        "sgemm_size": SGEMM_N,
        "machine": {
            "note": "shared 2-core CPU VM; other engineers' jobs ran concurrently (see load averages); "
            "with more runnable threads than cores, multi-threaded timings are the noisiest",
            "cpu": cpu_model(), "simd": simd_flags(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "transformers": __import__("transformers").__version__,
            "transformers_attn_implementation": models[2].config._attn_implementation,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "repeats": args.repeats,
            "warmup": args.warmup,
        },
        "runs": [],
    }
    for threads in dict.fromkeys(args.threads):  # unique, in order
        run = run_threads(threads, models, args.warmup, args.repeats)
        report(run)
        result["runs"].append(run)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
