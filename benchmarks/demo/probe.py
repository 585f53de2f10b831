"""Validation-only probe of one demo design choice: train some of the demo's runs with one change
(a training setting, a method setting, the world's geometry or another backbone file) and print
their validation numbers and C1's `vop`/`full` ratio.

    python benchmarks/demo/probe.py [--methods vop full] [--set KEY=VALUE ...] [--method-set KEY=VALUE ...]
        [--world KEY=VALUE ...] [--backbone FILE.safetensors] [--seed 0] [--data-seed 0] [--jobs 2]
        [--out-dir probe_out] [--json PATH]

``--set`` changes a ``DemoSettings`` field (``updates=1200``, ``weight_decay=0``,
``pairs=[150,100,150]``), ``--method-set`` a value of every run but ``zeroshot`` and
``full``, each of which must have it (``text_length=16 visual_length=16``: the component values
``vop methods --method NAME --json`` lists), ``--world`` a ``WorldSpec`` field (``small_large=[1.5,7.5]``, ``blur_steps=0``); VALUE is
JSON, or a plain string. ``--backbone`` trains on a file written by
``python -m vop_demo.pretrain --out DIR`` instead of the bundled ``tiny-synthetic``. Only the
validation split is read: this is how the demo's settings were chosen (``docs/demo-notes.md``),
and the test split is left to ``benchmarks/demo/seeds.py``. Runs with the same settings are
reused from ``--out-dir``; training is deterministic on CPU, so a probe reruns to the same numbers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from dataclasses import fields, replace
from pathlib import Path


def probe_settings(assignments: dict, data_seed: int, jobs: int):
    from vop_demo.settings import SETTINGS, DemoSettings
    from vop_demo.world.spec import as_tuples

    known = {f.name for f in fields(DemoSettings)} - {"methods", "seeds", "data_seed", "jobs", "threads"}
    bad = sorted(set(assignments) - known)
    if bad:
        raise SystemExit(f"--set: unknown setting(s) {bad}; known: {sorted(known)}")
    values = {k: as_tuples(v) for k, v in assignments.items()}  # lists become tuples; the lr dict stays
    return replace(SETTINGS["full"], data_seed=data_seed, jobs=jobs, threads=1, **values)


def _tag(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _train(job: dict) -> dict:
    """One run, in a worker process: trains the probe's run on its backbone (or reuses it) and
    scores the selected adapter on the validation split."""
    import torch

    from vop.adapter import load_adapter
    from vop.data.annotations import load_records
    from vop.data.cache import FrameCache
    from vop_demo.backbone import load_backbone
    from vop_demo.runs import run_one
    from vop_demo.scoring import breakdown_of
    from vop_demo.settings import RunSpec
    from vop_demo.world.files import load_metadata

    torch.set_num_threads(1)
    world, cache_dir, runs_dir = Path(job["world"]), Path(job["cache"]), Path(job["runs"])
    meta, clip = load_metadata(world), load_backbone(job["backbone"])
    start = time.perf_counter()
    spec = RunSpec(job["method"], tuple(sorted(job["overrides"].items())))
    result = run_one(job["settings"], world, cache_dir, meta, clip, job["name"], job["seed"], runs_dir,
                       log=lambda *a: None, spec=spec, backbone=job["backbone"])
    model = load_adapter(runs_dir / f"{job['name']}-seed{job['seed']}" / "adapter", clip)
    val = load_records("csv", world, split="val", videos_dir=world)
    split = breakdown_of(model, val, FrameCache(cache_dir), meta)
    budget = model.parameter_budget()
    return {"run": job["label"], "method": job["method"], "overrides": job["overrides"],
            "trainable_percent": budget["percent"], "val_score": result["val_score"],
            "selected_step": result["selected_step"], "val_order_free_R@1": split["order_free"]["R@1"],
            "val_pair_accuracy": split["pair_accuracy"], "seconds": time.perf_counter() - start,
            "reused": result.get("reused", False)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=["vop", "full"], help="demo runs or vop methods")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="DemoSettings fields")
    parser.add_argument("--method-set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="method values, set in every run but zeroshot and full (each must have the key)")
    parser.add_argument("--world", nargs="*", default=[], metavar="KEY=VALUE", help="WorldSpec fields")
    parser.add_argument("--backbone", type=Path, help="a .safetensors from vop_demo.pretrain (default: bundled)")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--data-seed", type=int, default=0, help="world seed")
    parser.add_argument("--jobs", type=int, default=2, help="runs trained at once, one thread each")
    parser.add_argument("--out-dir", type=Path, default=Path("probe_out"))
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)

    from vop.model import resolve_method
    from vop_demo.cache import prepare_cache
    from vop_demo.pretrain import file_sha256
    from vop_demo.settings import run_spec
    from vop_demo.world.files import generate_world
    from vop_demo.world.spec import SplitPairs, changed_spec, parse_assignments

    try:
        settings_set = parse_assignments(args.set, "--set")
        world_set = parse_assignments(args.world, "--world")
        method_set = parse_assignments(args.method_set, "--method-set")
        spec = changed_spec(world_set)
    except ValueError as err:
        raise SystemExit(str(err)) from None
    settings = probe_settings(settings_set, args.data_seed, args.jobs)
    backbone = None
    if args.backbone:
        if not args.backbone.is_file():
            raise SystemExit(f"--backbone {args.backbone}: no such file")
        backbone = str(args.backbone.resolve())
        backbone_sha = file_sha256(args.backbone)
    jobs = []
    for name in args.methods:
        try:
            base = run_spec(name)
        except KeyError as err:
            raise SystemExit(str(err)) from None
        overrides = dict(base.overrides)
        own = {}
        if method_set and base.method not in ("zeroshot", "full"):
            try:
                resolve_method(base.method, method_set)
            except KeyError as err:
                raise SystemExit(f"--method-set: {err.args[0]}") from None
            own = method_set
        overrides.update(own)
        label = name + "".join(f" {k}={json.dumps(v)}" for k, v in own.items())
        jobs.append({"name": f"{name}-{_tag(own)}" if own else name, "label": label, "method": base.method,
                     "overrides": overrides, "seed": args.seed, "settings": settings, "backbone": backbone})

    world_tag = _tag(args.data_seed, settings.pairs, world_set)
    world = generate_world(args.out_dir / f"world-{world_tag}", seed=args.data_seed, sizes=SplitPairs(*settings.pairs),
                           spec=spec, progress=True)
    cache_dir = prepare_cache(world, args.out_dir / f"cache-{world_tag}", progress=True)
    # runs with other settings live in other folders: probes run side by side never share a run
    runs_dir = args.out_dir / f"runs-{_tag(world_tag, backbone_sha if backbone else 'bundled', settings_set)}"
    for job in jobs:
        job.update(world=str(world), cache=str(cache_dir), runs=str(runs_dir))
    print(f"world {world} ({'default' if not world_set else world_set}); backbone {backbone or 'tiny-synthetic'}; "
          f"runs in {runs_dir}", flush=True)

    if args.jobs <= 1 or len(jobs) <= 1:
        rows = [_train(job) for job in jobs]
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(args.jobs, len(jobs)), mp_context=multiprocessing.get_context("spawn")) as pool:
            rows = list(pool.map(_train, jobs))

    print(f"\nvalidation of world {args.data_seed}, training seed {args.seed} (score: {settings.select}):")
    print(f"{'run':<40} {'train %':>8} {'score':>7} {'step':>5} {'order-free R@1':>15} {'pair acc':>9} {'s':>5}")
    for r in rows:
        print(f"{r['run']:<40} {r['trainable_percent']:8.3f} {r['val_score']:7.1f} {r['selected_step']:5d} "
              f"{r['val_order_free_R@1']:15.1f} {r['val_pair_accuracy']:9.1f} {r['seconds']:5.0f}"
              f"{'  (reused)' if r['reused'] else ''}")
    by_method = {r["method"]: r for r in rows}
    ratio = None
    if "vop" in by_method and "full" in by_method and by_method["full"]["val_order_free_R@1"]:
        ratio = by_method["vop"]["val_order_free_R@1"] / by_method["full"]["val_order_free_R@1"]
        print(f"C1 on validation: vop/full order-free R@1 = {ratio:.2f} (the claim asks >= 0.85 on test)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "benchmark": "demo_probe (validation split only)", "set": settings_set, "lr": settings.lr,
            "updates": settings.updates, "method_set": method_set, "world": world_set, "backbone": backbone, "seed": args.seed,
            "data_seed": args.data_seed, "machine": f"{os.cpu_count()}-core CPU; load average "
            f"{os.getloadavg()[0]:.2f} at the end", "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "rows": rows, "vop_over_full": ratio}, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
