"""One optimisation step on ViT-B/32: ``vop`` and ``vop-fc`` against ``full``, side by side.

Setting (the paper's recipe, CPU fp32): random-weight ViT-B/32, a batch of 4 videos x 12 frames
at 224 px and 4 captions of 77 tokens, symmetric InfoNCE with CLIP's frozen logit scale, AdamW
(weight decay 0.2) over the method's trainable tensors only. Every method runs in its own
subprocess so that its memory is measured cleanly. The processes are driven step by step in
turn (one computes at a time, the order rotates each round), so the load of a shared machine
falls on all methods alike. The first ``--warmup`` steps of each (default 2: the first also
allocates AdamW's state, and a fresh process is still slower on its second step) are discarded
from the timing but not from the memory peak.

Memory: after construction (model, optimiser, inputs) the worker resets the kernel's peak-RSS
mark (``/proc/self/clear_refs`` = 5) and records its RSS as the baseline; the step overhead is
``VmHWM - baseline`` after the steps (activations, gradients, AdamW state). The total peak is
reported too. Without ``clear_refs`` it falls back to ``ru_maxrss`` and says so in the JSON.

    python benchmarks/train_step.py [--steps 12] [--warmup 2] [--threads 2] [--methods vop vop-fc full]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from tqdm import tqdm

RESULTS = Path(__file__).resolve().parent / "results" / "train_step.json"


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _reset_peak() -> str:
    """Reset the peak-RSS mark; returns how peaks are measured."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return "VmHWM after clear_refs=5"
    except OSError:
        return "ru_maxrss (peak since process start; clear_refs unavailable)"


def _peak_kb(how: str) -> int:
    if how.startswith("VmHWM"):
        return _status_kb("VmHWM")
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def build_step(method: str, threads: int, batch: int, frames: int, size: int):
    """Model, optimiser and inputs for ``method``; returns ``(model, step)`` with ``step() -> loss``."""
    import torch
    import torch.nn.functional as F

    from vop.backbone.clip import build_clip
    from vop.model import build_model

    torch.set_num_threads(threads)
    model = build_model(build_clip("ViT-B-32", seed=0), method, frames=frames, seed=0)
    model.train()
    opt = torch.optim.AdamW([p for _, p in model.trainable_named_parameters()], lr=1e-5, weight_decay=0.2)
    g = torch.Generator().manual_seed(0)
    video = torch.randn(batch, frames, 3, size, size, generator=g)
    tokens = torch.zeros(batch, 77, dtype=torch.long)
    tokens[:, 0], tokens[:, 1:11] = 49406, torch.randint(300, 40000, (batch, 10), generator=g)
    tokens[:, 11] = 49407
    target = torch.arange(batch)

    def step() -> float:
        logits = model.logit_scale() * model.similarity(model.encode_text(tokens), model.encode_video(video))
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    return model, step


def worker(method: str, threads: int, batch: int, frames: int, size: int) -> None:
    """Subprocess protocol on stdin/stdout, one JSON line per reply: build, print ``ready``; then
    ``step`` -> run one step and print its time; ``done`` -> print memory and exit."""
    model, step = build_step(method, threads, batch, frames, size)
    how = _reset_peak()
    baseline_kb = _status_kb("VmRSS")
    print(json.dumps({"ready": method, "trainable": model.parameter_budget()["trainable"]}), flush=True)
    for line in sys.stdin:
        if line.strip() == "step":
            t0 = time.perf_counter()
            loss = step()
            print(json.dumps({"step_s": time.perf_counter() - t0, "loss": loss}), flush=True)
            continue
        peak_kb = _peak_kb(how)
        print(json.dumps({"baseline_rss_mb": baseline_kb / 1024, "peak_rss_mb": peak_kb / 1024,
                          "step_overhead_mb": (peak_kb - baseline_kb) / 1024, "memory_measure": how}), flush=True)
        return


class Worker:
    """One method in its own process (its memory is its own), driven step by step."""

    def __init__(self, method: str, args: argparse.Namespace):
        cmd = [sys.executable, __file__, "--worker", method, "--threads", str(args.threads),
               "--batch", str(args.batch), "--frames", str(args.frames), "--size", str(args.size)]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        self.method = method
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def ask(self, command: str | None = None) -> dict:
        if command is not None:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.method} exited with {self.proc.wait()}")
        return json.loads(line)


def measure(args: argparse.Namespace) -> dict[str, dict]:
    """Interleave the methods step by step (rotating the order each round), so that load changes
    on a shared machine hit every method alike; only one process computes at a time."""
    workers = []
    for m in args.methods:  # built one after another: construction peaks do not overlap
        workers.append(Worker(m, args))
        workers[-1].ready = workers[-1].ask()
    times: dict[str, list[float]] = {w.method: [] for w in workers}
    for s in tqdm(range(args.steps), desc="rounds", file=sys.stderr):
        for w in workers[s % len(workers):] + workers[: s % len(workers)]:
            times[w.method].append(w.ask("step")["step_s"])
    rows = {}
    for w in workers:
        mem = w.ask("done")
        w.proc.wait()
        timed = times[w.method][args.warmup:] or times[w.method]
        rows[w.method] = {"method": w.method, "trainable": w.ready["trainable"],
                          "step_s_mean": sum(timed) / len(timed), "step_s_min": min(timed),
                          "step_s_all": times[w.method], **mem}
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", default=["vop", "vop-fc", "full"])
    ap.add_argument("--reference", default="full")
    ap.add_argument("--steps", type=int, default=12, help="steps per method, warm-up included")
    ap.add_argument("--warmup", type=int, default=2, help="first steps left out of the timing")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.threads, args.batch, args.frames, args.size)
        return 0

    import torch

    load_before = os.getloadavg()
    rows = measure(args)
    ref = rows[args.reference]
    ref_name = args.reference
    print(f"{'method':<8} {'trainable':>12} {'mean s':>7} {'time x':>7} {'min s':>6} {'min x':>6} "
          f"{'step MB':>8} {'mem x':>6} {'peak MB':>8}")
    for m, r in rows.items():
        # mean and fastest timed step: on a loaded machine the minimum is the least disturbed one
        r["time_ratio_vs_" + ref_name] = r["step_s_mean"] / ref["step_s_mean"]
        r["min_time_ratio_vs_" + ref_name] = r["step_s_min"] / ref["step_s_min"]
        r["step_memory_ratio_vs_" + ref_name] = r["step_overhead_mb"] / ref["step_overhead_mb"]
        r["peak_rss_ratio_vs_" + ref_name] = r["peak_rss_mb"] / ref["peak_rss_mb"]
        print(f"{m:<8} {r['trainable']:>12,} {r['step_s_mean']:>7.2f} {r['time_ratio_vs_' + ref_name]:>7.2f} "
              f"{r['step_s_min']:>6.2f} {r['min_time_ratio_vs_' + ref_name]:>6.2f} "
              f"{r['step_overhead_mb']:>8.0f} {r['step_memory_ratio_vs_' + ref_name]:>6.2f} {r['peak_rss_mb']:>8.0f}")
    result = {
        "benchmark": "train_step",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "setting": {"backbone": "ViT-B-32 (random weights)", "batch_videos": args.batch, "frames": args.frames,
                    "image_size": args.size, "captions": args.batch, "context_length": 77, "dtype": "float32",
                    "optimizer": "AdamW(lr=1e-5, weight_decay=0.2)", "steps": args.steps,
                    "warmup_steps_discarded": args.warmup,
                    "schedule": "methods interleaved step by step, order rotated each round", "threads": args.threads, "reference": args.reference},
        "machine": {"note": "CPU VM; load averages before/after recorded (other work on the machine slows every method alike, interleaved)",
                    "cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "processor": platform.processor(), "python": platform.python_version(),
                    "torch": torch.__version__, "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
