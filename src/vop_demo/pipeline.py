"""``vop demo`` from end to end: the world, every method trained and scored, the claims checked.

Steps, each through the project's real code (nothing demo-specific in between):

1. :func:`vop_demo.world.generate_world` writes (or reuses) a world: lossless clips, each with its
   time-reversed partner, and ``video,caption,group`` annotations;
2. ``vop prepare``'s frame cache decodes every clip once (:mod:`vop_demo.cache`);
3. the bundled ``tiny-synthetic`` backbone is loaded through ``resolve_backbone`` and checked
   (G1-G3, :mod:`vop_demo.backbone`);
4. every (run, seed) trains with ``vop train``'s loop and is scored on the test split
   (:mod:`vop_demo.runs`, :mod:`vop_demo.scoring`);
5. the claims are checked on the results (:mod:`vop_demo.claims`) with the demo's wall clock
   (:mod:`vop_demo.clock`), and ``results.{json,md,png}`` written (:mod:`vop_demo.report`).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

from vop_demo.console import say
from vop_demo.settings import BACKBONE, DemoSettings


def run_demo(settings: DemoSettings, out_dir: Path, progress: bool = True, started: float | None = None) -> dict:
    """World -> every (run, seed) -> claims -> ``results.{json,md,png}`` in ``out_dir``. ``started``:
    when the demo began (``time.time()``; default now), the start of C3's wall clock."""
    import torch

    from vop_demo import claims, clock, report
    from vop_demo.backbone import backbone_checks, load_backbone
    from vop_demo.cache import prepare_cache
    from vop_demo.runs import run_all
    from vop_demo.search_example import search_example
    from vop_demo.world.files import generate_world, load_metadata

    started = time.time() if started is None else started
    torch.set_num_threads(settings.threads * max(1, settings.jobs))  # the runs' workers have their own
    out_dir = Path(out_dir)
    pairs = settings.split_pairs()
    say("demo", f"world {settings.data_seed}: {pairs.train}/{pairs.val}/{pairs.test} reverse pairs in "
                f"train/val/test -> {out_dir / f'world-{settings.data_seed}'}")
    world = generate_world(out_dir / f"world-{settings.data_seed}", seed=settings.data_seed, sizes=pairs,
                           progress=progress)
    meta = load_metadata(world)
    say("demo", f"frame cache -> {out_dir / f'cache-{settings.data_seed}'}")
    cache_dir = prepare_cache(world, out_dir / f"cache-{settings.data_seed}", progress)
    clip = load_backbone()
    say("demo", f"backbone {BACKBONE} (weights sha256 {clip.weights_sha256[:16]}...): checking G1-G3")
    backbone = backbone_checks(clip, world, meta, cache_dir, settings.batch_size)
    runs_dir = out_dir / f"runs-{settings.data_seed}"
    runs = run_all(settings, world, cache_dir, meta, clip, runs_dir, log=lambda line: print(line, flush=True))
    summary = report.summarize(runs, settings.methods)
    summary.update(settings=asdict(settings), world=str(world), backbone=BACKBONE,
                   backbone_sha256=clip.weights_sha256, backbone_checks=backbone)
    say("demo", "search example with the best trained adapter on validation")
    summary["search_example"] = search_example(summary, clip, world, meta, cache_dir)
    summary["machine"] = report.machine_note(settings.threads, settings.jobs)
    summary["clock"] = clock.demo_clock(runs, runs_dir, started, settings.jobs, summary["machine"], save=False)
    summary["claims"] = [asdict(c) for c in claims.check(summary)]
    report.write_outputs(summary, out_dir)
    # the clock again, now that the results are written: that is when the demo is done
    summary["clock"] = clock.demo_clock(runs, runs_dir, started, settings.jobs, summary["machine"])
    verdicts = [c["holds"] for c in summary["claims"]]
    summary["claims"] = [asdict(c) for c in claims.check(summary)]
    report.write_outputs(summary, out_dir, chart=verdicts != [c["holds"] for c in summary["claims"]])
    return summary
