"""Learning-rate sweep per method family on the synthetic temporal benchmark (tiny CLIP, CPU).

No GPU and no real benchmark data are available where vop is built, so the recipes' learning
rates come from the literature per family; this sweep checks, on the one benchmark we *can*
train on, where each family's best rate lies and whether the families order the way the recipes
assume (backbone weights << new modules <= prompts). Selection is on the validation split only
(the test split is not read): the rate whose selected adapter has the best validation score
(``DemoSettings.select``, R@1+R@5+R@10 t2v) wins; the selected adapter's order-free R@1 and pair
accuracy on validation are printed too. Uses the demo's world, cache and settings
(``vop_demo``), the project's training loop, one seed. The demo's own rates were chosen with it.

    python benchmarks/lr_sweep.py [--methods vop proj ...] [--lrs 1e-4 1e-3 ...] [--out-dir sweep_out]

Caveat: a 6-layer, 64-wide CLIP on 32 px cartoons is not ViT-B/32 on MSR-VTT; the absolute best
rates do not transfer, the ordering between families is what this can support.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import replace
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "lr_sweep.json"
GRID = {
    "vop": [1e-3, 1e-2, 3e-2, 6e-2, 1e-1],
    "vop-c": [1e-4, 5e-4, 2e-3, 5e-3],
    "adapter-ffn": [1e-5, 1e-4, 1e-3],
    "bias": [1e-5, 1e-4, 1e-3, 5e-3],
    "proj": [1e-6, 1e-5, 1e-4, 1e-3],
    "vop-p": [1e-2, 3e-2, 6e-2, 1e-1],
    "vop-f": [1e-2, 3e-2, 6e-2, 1e-1],
    "vop-fc": [1e-2, 3e-2, 6e-2, 1e-1],
    "full": [1e-5, 1e-4, 3e-4, 6e-4, 1e-3],
}


def best_val(run_dir: Path, select: str) -> dict:
    """The validation record that selected the run's adapter (``select``, the demo's score)."""
    from vop.eval.metrics import SELECT_SCORES

    score = SELECT_SCORES[select]
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    val = [r for r in rows if r["kind"] == "val"]
    best = max(val, key=score)
    return {"best_val_score": score(best), "best_val_t2v_R@1": best["t2v"]["R@1"],
            "best_val_v2t_R@1": best["v2t"]["R@1"], "best_step": best["step"],
            "last_val_score": score(val[-1]), "final_train_loss": [r for r in rows if r["kind"] == "train"][-1]["loss"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", nargs="+", default=["vop", "adapter-ffn", "full"])
    ap.add_argument("--lrs", nargs="+", type=float, help="one grid for every method (default: per family)")
    ap.add_argument("--out-dir", default="sweep_out")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--train-pairs", type=int, help="fewer training pairs than the demo (CPU budget)")
    ap.add_argument("--updates", type=int, help="fewer updates than the demo (CPU budget)")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()

    import torch

    from vop.adapter import load_adapter
    from vop.data.annotations import load_records
    from vop.data.cache import FrameCache
    from vop.train.loop import train
    from vop_demo.backbone import load_backbone
    from vop_demo.cache import prepare_cache
    from vop_demo.runs import train_config
    from vop_demo.scoring import breakdown_of
    from vop_demo.settings import SETTINGS
    from vop_demo.world.files import generate_world, load_metadata
    from vop_demo.world.spec import SplitPairs

    torch.set_num_threads(args.threads)
    settings = SETTINGS["full"]
    if args.train_pairs:
        settings = replace(settings, pairs=(args.train_pairs, *settings.pairs[1:]))
    if args.updates:
        settings = replace(settings, updates=args.updates)
    out = Path(args.out_dir)
    world = generate_world(out / "world", seed=settings.data_seed, sizes=SplitPairs(*settings.pairs), progress=False)
    cache_dir = prepare_cache(world, out / "cache", progress=False)
    meta, clip = load_metadata(world), load_backbone()
    val_records = load_records("csv", world, split="val", videos_dir=world)
    rows = []
    for method in args.methods:
        for lr in args.lrs or GRID[method]:
            cfg = train_config(settings, world, cache_dir, method, 0, out / "runs")
            cfg = replace(cfg, name=f"{method}-lr{lr:g}", optim=replace(cfg.optim, lr=lr))
            run_dir = out / "runs" / cfg.name
            t0 = time.perf_counter()
            reused = (run_dir / "adapter" / "adapter.json").is_file()
            if not reused:
                train(cfg, run_dir=run_dir, resume=(run_dir / "checkpoints" / "last.pt").is_file(),
                      show_progress=False)
            row = {"method": method, "lr": lr, "seconds": None if reused else time.perf_counter() - t0,
                   "reused": reused, **best_val(run_dir, settings.select)}
            split = breakdown_of(load_adapter(run_dir / "adapter", clip), val_records, FrameCache(cache_dir), meta)
            row.update(val_order_free_R1=split["order_free"]["R@1"], val_pair_accuracy=split["pair_accuracy"])
            rows.append(row)
            print(f"{method:<12} lr {lr:<8g} best val {settings.select} {row['best_val_score']:6.2f} "
                  f"(step {row['best_step']}; t2v R@1 {row['best_val_t2v_R@1']:.2f}, order-free R@1 "
                  f"{row['val_order_free_R1']:.1f}, pair acc {row['val_pair_accuracy']:.1f}) "
                  f"loss {row['final_train_loss']:.3f}  "
                  f"{'reused' if reused else format(row['seconds'], '.0f') + ' s'}", flush=True)
    chosen = {}
    for method in args.methods:
        mine = [r for r in rows if r["method"] == method]
        chosen[method] = max(mine, key=lambda r: r["best_val_score"])["lr"]
    print(f"best lr by validation {settings.select}:", json.dumps(chosen))
    # one rate for every method swept (the demo uses one rate for all prompt methods): the best sum
    shared = set.intersection(*({r["lr"] for r in rows if r["method"] == m} for m in args.methods))
    family = None
    if len(args.methods) > 1 and shared:
        family = max(shared, key=lambda lr: sum(r["best_val_score"] for r in rows if r["lr"] == lr))
        print(f"one lr for {' '.join(args.methods)} by the sum of their validation {settings.select}: {family:g}")
    result = {
        "benchmark": "lr_sweep on the demo world (vop_demo; validation split only)",
        "machine": f"{os.cpu_count()}-core CPU, no GPU; fp32; load average {os.getloadavg()[0]:.2f} at the end",
        "platform": platform.platform(), "torch": torch.__version__, "threads": args.threads,
        "settings": {"backbone": "tiny-synthetic", "pairs_train_val_test": settings.pairs,
                     "updates": settings.updates, "batch_size": settings.batch_size,
                     "weight_decay": settings.weight_decay, "augment": False, "seed": 0},
        "selected_on": f"validation {settings.select}",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": rows, "best_lr_by_validation": chosen,
        "one_lr_for_all_methods_swept": family,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
