"""Which int8 implementation for the frozen backbone on a CPU: measured side by side, one process.

Candidates (all int8 weights with dynamic, i.e. per-call, activation quantization):

* ``vop``: ``vop.backbone.quantize`` -- fbgemm's dynamic int8 GEMM called directly, every linear
  layer including the attention's q/k/v (a bare parameter), per-channel weight scales, per-token
  activation scales; ``vop-tensor-act``: the same with one activation range per call;
  ``vop-no-qkv``: q/k/v left fp32 (what ``quantize_dynamic`` can reach).
* ``ao``: ``torch.ao.quantization.quantize_dynamic(clip, {nn.Linear}, qint8)``, the deprecated
  eager API (same kernel; per-tensor weight scales; q/k/v stay fp32).
* ``torchao``: ``torchao.quantization.quantize_(.., Int8DynamicActivationInt8WeightConfig())``
  on the ``nn.Linear`` layers, only if torchao is importable (it is not a vop dependency).
* ``int_mm``: a hand-written path, per-token int8 activations times per-channel int8 weights
  through ``torch._int_mm`` (one GEMM only: see the numbers for why not the whole encoder).

Part 1 times one GEMM of the encoder (12 frames x 50 tokens, 768 -> 3072: the MLP's c_fc);
part 2 the ViT-B/32 image encoder on 12 frames at 224 px (random weights, seed 0). Repeats are
interleaved (every candidate once per repeat) so load from other processes hits all alike;
medians and the ratio to fp32 are reported, with the load average before and after.

    python benchmarks/int8_options.py [--threads 2] [--repeats 5] [--out benchmarks/results/int8_options.json]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP workers sleep: spinning ones steal a shared CPU

import argparse
import copy
import importlib.util
import json
import platform
import statistics
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from int8_common import loadavg
from torch import nn

from vop.backbone.clip import build_clip
from vop.backbone.quantize import int8_layers, quantize_clip


def interleaved(fns: dict, repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of every function, the candidates taking turns within each repeat."""
    times = {k: [] for k in fns}
    for _ in range(warmup):
        for f in fns.values():
            f()
    for r in range(repeats):
        order = list(fns) if r % 2 == 0 else list(reversed(fns))
        for k in order:
            t = time.perf_counter()
            fns[k]()
            times[k].append(time.perf_counter() - t)
    return times


def summarize(times: dict[str, list[float]], base: str = "fp32") -> dict:
    base_med = statistics.median(times[base])
    return {k: {"median_s": statistics.median(v), "min_s": min(v), "runs_s": v,
                "speedup_vs_fp32": base_med / statistics.median(v)} for k, v in times.items()}


def torchao_quantize(module: nn.Module) -> nn.Module | None:
    if importlib.util.find_spec("torchao") is None:
        return None
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    quantize_(module, Int8DynamicActivationInt8WeightConfig())
    return module


def torchao_install() -> dict | None:
    spec = importlib.util.find_spec("torchao")
    if spec is None or spec.origin is None:
        return None
    import torchao

    root = Path(spec.origin).parent
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    return {"version": torchao.__version__, "installed_mb": round(size / 2**20, 1)}


def int_mm_linear(x: torch.Tensor, w_int8_t: torch.Tensor, w_scale: torch.Tensor, bias: torch.Tensor):
    """Per-token symmetric int8 activations x per-channel int8 weights via torch._int_mm."""
    s = x.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127
    xq = (x / s).round_().clamp_(-127, 127).to(torch.int8)
    return torch._int_mm(xq, w_int8_t).float().mul_(s).mul_(w_scale).add_(bias)


def gemm_part(repeats: int) -> dict:
    torch.manual_seed(0)
    lin = nn.Linear(768, 3072)
    x = torch.randn(600, 768)
    from vop.backbone.quantize import Int8Linear

    ours = Int8Linear(lin.weight, lin.bias)
    w_scale = lin.weight.abs().amax(dim=1) / 127
    w_t = (lin.weight / w_scale[:, None]).round().clamp(-127, 127).to(torch.int8).t()  # [in, out]
    fns = {
        "fp32": lambda: lin(x),
        "vop": lambda: ours(x),
        "int_mm": lambda: int_mm_linear(x, w_t, w_scale, lin.bias),
    }
    tao = torchao_quantize(copy.deepcopy(lin))
    if tao is not None:
        fns["torchao"] = lambda: tao(x)
    with torch.no_grad():
        ref = lin(x)
        err = {k: float((f() - ref).norm() / ref.norm()) for k, f in fns.items()}
        out = summarize(interleaved(fns, repeats))
    for k in out:
        out[k]["relative_error"] = err[k]
    return {"shape": "600x768 @ 768x3072", "candidates": out}


def encoder_part(repeats: int, with_torchao: bool) -> dict:
    clip = build_clip("ViT-B-32", seed=0)
    torch.manual_seed(1)
    images = torch.randn(12, 3, 224, 224)
    models = {"fp32": clip}
    t0 = time.perf_counter()
    models["vop"] = copy.deepcopy(clip)
    quantize_clip(models["vop"])
    build_s = time.perf_counter() - t0
    models["vop-tensor-act"] = copy.deepcopy(clip)
    quantize_clip(models["vop-tensor-act"])
    for m in int8_layers(models["vop-tensor-act"]):
        m.per_token = False
    models["vop-no-qkv"] = copy.deepcopy(clip)
    quantize_clip(models["vop-no-qkv"], keep=[r"attn\.in_proj$"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice
        from torch.ao.quantization import quantize_dynamic

        models["ao"] = quantize_dynamic(copy.deepcopy(clip), {nn.Linear}, dtype=torch.qint8)
    slow = {}
    if with_torchao:
        tao = torchao_quantize(copy.deepcopy(clip))
        if tao is not None:
            slow["torchao"] = tao
    with torch.no_grad():
        ref = clip.encode_image(images)
        cos = {k: float(F.cosine_similarity(ref, m.encode_image(images)).min())
               for k, m in {**models, **slow}.items()}
        out = summarize(interleaved({k: (lambda m=m: m.encode_image(images)) for k, m in models.items()}, repeats))
        if slow:  # far slower here: one timed call each, set against fp32's median
            for k, m in slow.items():
                t = time.perf_counter()
                m.encode_image(images)
                s = time.perf_counter() - t
                out[k] = {"median_s": s, "min_s": s, "runs_s": [s],
                          "speedup_vs_fp32": out["fp32"]["median_s"] / s}
    for k in out:
        out[k]["min_cosine_to_fp32"] = cos[k]
    return {"workload": "ViT-B/32 image encoder, 12 frames at 224 px, random weights (seed 0)",
            "vop_int8_build_seconds": build_s, "candidates": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-torchao-encoder", action="store_true", help="skip torchao's (slow) encoder run")
    ap.add_argument("--out", default="benchmarks/results/int8_options.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    result = {"threads": args.threads, "repeats": args.repeats, "torch": torch.__version__,
              "quantized_engine": torch.backends.quantized.engine, "cpu": platform.processor() or platform.machine(),
              "torchao": torchao_install(), "loadavg_before": loadavg()}
    result["gemm"] = gemm_part(args.repeats)
    result["encoder"] = encoder_part(args.repeats, not args.no_torchao_encoder)
    result["loadavg_after"] = loadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for part in ("gemm", "encoder"):
        print(part)
        for k, v in result[part]["candidates"].items():
            extra = v.get("relative_error", v.get("min_cosine_to_fp32"))
            print(f"  {k:<15} {v['median_s'] * 1e3:9.1f} ms  {v['speedup_vs_fp32']:5.2f}x  quality {extra:.6f}")
    print(f"load average before/after: {result['loadavg_before']} / {result['loadavg_after']}; wrote {args.out}")


if __name__ == "__main__":
    main()
