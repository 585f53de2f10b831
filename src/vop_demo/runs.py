"""The runs: each (run, seed) trained with ``vop train``'s loop on the demo's backbone and scored
on the test split (:mod:`vop_demo.scoring`); finished runs are reused, several train at once in
worker processes, and every line a run prints carries its label (:mod:`vop_demo.console`)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from vop_demo.console import labelled_stdout, run_label
from vop_demo.settings import BACKBONE, DemoSettings, RunSpec, run_spec
from vop_demo.world.spec import WorldSpec


def train_config(settings: DemoSettings, world: Path, cache_dir: Path, name: str, seed: int, runs_dir: Path,
                 spec: RunSpec | None = None, backbone: str | None = None):
    """``vop train``'s config of one (run, seed); ``spec`` and ``backbone`` default to ``run_spec(name)``
    and the bundled backbone."""
    from vop.train.config import DataConfig, EvalConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig

    spec = spec or run_spec(name)
    world_spec = WorldSpec()
    return TrainConfig(
        name=f"{name}-seed{seed}",
        seed=seed,
        model=ModelConfig(backbone=backbone or BACKBONE, method=spec.method, frames=world_spec.frames,
                          overrides=dict(spec.overrides)),
        data=DataConfig(dataset="csv", annotations=str(world), videos=str(world), train_split="train",
                        val_split="val", test_split="test", image_size=world_spec.size, augment=False,
                        cache=str(cache_dir), group_batches=True),
        optim=OptimConfig(lr=settings.lr_for(spec.method), weight_decay=settings.weight_decay, epochs=10_000,
                          batch_size=settings.batch_size),
        eval=EvalConfig(batch_size=128, every_epochs=10_000, every_steps=settings.validate_every,
                        select=settings.select),
        run=RunConfig(out_dir=str(runs_dir), device="cpu", threads=settings.threads, log_every=50,
                      max_steps=settings.updates),
    ).validate()


def run_dir_of(runs_dir: Path, name: str, seed: int) -> Path:
    return runs_dir / f"{name}-seed{seed}"


def finished_run(settings: DemoSettings, name: str, seed: int, runs_dir: Path, spec: RunSpec | None = None,
                 backbone_sha: str | None = None) -> dict | None:
    """The saved result of (run, seed) if it was made and scored with these settings, else None."""
    done = run_dir_of(runs_dir, name, seed) / "demo_result.json"
    if done.is_file():
        cached = json.loads(done.read_text())
        if cached.get("key") == settings.key(name, seed, spec, backbone_sha):
            return {**cached, "reused": True}
    return None


def _trained_before(settings: DemoSettings, name: str, seed: int, runs_dir: Path, spec: RunSpec | None,
                    backbone_sha: str | None) -> dict | None:
    """The saved result of a run trained with these settings but scored by an older version."""
    done = run_dir_of(runs_dir, name, seed) / "demo_result.json"
    if done.is_file() and (done.parent / "adapter" / "adapter.json").is_file():
        cached = json.loads(done.read_text())
        if cached.get("train_key") == settings.train_key(name, seed, spec, backbone_sha):
            return cached
    return None


def run_one(settings: DemoSettings, world: Path, cache_dir: Path, meta: dict, clip, name: str, seed: int,
            runs_dir: Path, log=print, spec: RunSpec | None = None, backbone: str | None = None) -> dict:
    """Train + score one (run, seed); a finished run with the same settings is reused, one trained
    with them but scored by an older version is scored again. ``spec`` (default ``run_spec(name)``)
    and ``backbone`` (a file; default the bundled one, which ``clip`` must be loaded from) let a
    caller train a run that :data:`~vop_demo.settings.RUNS` does not name. ``log`` gets plain
    lines; the caller labels them."""
    from vop.data.cache import FrameCache
    from vop.train.loop import train
    from vop_demo.scoring import evaluate_run

    spec = spec or run_spec(name)
    backbone_sha = clip.weights_sha256 if backbone else None
    run_dir = run_dir_of(runs_dir, name, seed)
    cached = finished_run(settings, name, seed, runs_dir, spec, backbone_sha)
    if cached is not None:
        log(f"reusing {run_dir}")
        return cached
    earlier = _trained_before(settings, name, seed, runs_dir, spec, backbone_sha)
    if earlier is not None:
        log(f"scoring the adapter trained earlier in {run_dir}")
        seconds, rescored = earlier["train_seconds"], True
    else:
        if run_dir.exists():
            shutil.rmtree(run_dir)  # unfinished or made with other settings: start again
        log(f"training -> {run_dir}")
        start = time.perf_counter()
        train(train_config(settings, world, cache_dir, name, seed, runs_dir, spec, backbone), run_dir=run_dir,
              show_progress=False)
        seconds, rescored = time.perf_counter() - start, False
    result = evaluate_run(run_dir, clip, world, FrameCache(cache_dir), meta, settings.select)
    result.update(key=settings.key(name, seed, spec, backbone_sha),
                  train_key=settings.train_key(name, seed, spec, backbone_sha),
                  name=name, method=spec.method, seed=seed, train_seconds=seconds, run_dir=str(run_dir))
    (run_dir / "demo_result.json").write_text(json.dumps(result, indent=1))
    return {**result, "reused": rescored}


def _run_in_worker(settings: DemoSettings, world: Path, cache_dir: Path, name: str, seed: int,
                   runs_dir: Path) -> dict:
    """:func:`run_one` in a fresh process (``spawn``): its own torch threads, backbone and metadata,
    and every line it prints labelled with the run."""
    import torch

    from vop_demo.backbone import load_backbone
    from vop_demo.world.files import load_metadata

    torch.set_num_threads(settings.threads)
    with labelled_stdout(run_label(name, seed, settings.seeds)):
        return run_one(settings, world, cache_dir, load_metadata(world), load_backbone(), name, seed, runs_dir)


def run_all(settings: DemoSettings, world: Path, cache_dir: Path, meta: dict, clip, runs_dir: Path,
            log=print) -> list[dict]:
    """Every (run, seed) of ``settings``, ``settings.jobs`` at a time; results in the order of
    ``settings.seeds`` x ``settings.methods``. With ``jobs > 1`` each run trains in a worker process."""
    todo = [(name, seed) for seed in settings.seeds for name in settings.methods]
    results = {job: finished_run(settings, *job, runs_dir) for job in todo}
    fresh = [job for job, result in results.items() if result is None]
    for name, seed in todo:
        if results[name, seed] is not None:
            log(f"[{run_label(name, seed, settings.seeds)}] reusing {run_dir_of(runs_dir, name, seed)}")
    if settings.jobs <= 1 or len(fresh) <= 1:
        for name, seed in fresh:
            with labelled_stdout(run_label(name, seed, settings.seeds)):
                results[name, seed] = run_one(settings, world, cache_dir, meta, clip, name, seed, runs_dir)
        return [results[job] for job in todo]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(min(settings.jobs, len(fresh)), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {job: pool.submit(_run_in_worker, settings, world, cache_dir, *job, runs_dir) for job in fresh}
        for job, future in futures.items():
            results[job] = future.result()
    return [results[job] for job in todo]
