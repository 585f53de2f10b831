"""``vop demo``: the world, every method trained and scored, the claims checked.

Steps, each through the project's real code (nothing demo-specific in between):

1. :func:`vop.demo.world.generate_world` writes (or reuses) a world: lossless clips, each with its
   time-reversed partner, and ``video,caption,group`` annotations;
2. ``vop prepare``'s frame cache decodes every clip once;
3. for every seed and run, ``vop.train.loop.train`` trains the method on the bundled
   ``tiny-synthetic`` backbone (the loss, optimiser, schedule and validation-selected adapter of
   ``vop train``);
4. the selected adapter scores the test split with ``vop.eval.retrieval.evaluate``, plus two
   numbers the standard protocol cannot show (:func:`temporal_breakdown`): **order-free R@1**
   (the reversed partner also counts as correct) and **pair accuracy** (% of captions that score
   their own clip above its reversed partner; 50 is chance and exactly what an order-free method
   gets);
5. :mod:`vop.demo.claims` checks the paper's claims on the results; ``results.{json,md,png}``.

Training settings are data (:class:`DemoSettings`); how they were chosen (on validation only)
is written next to them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from vop.demo.world import SplitPairs, WorldSpec

BACKBONE = "tiny-synthetic"
IMAGE_SIZE = WorldSpec().size  # clips are drawn at the backbone's input size
TRAIN_CHECK_CLIPS = 200  # training clips (whole reverse pairs) scored too: is order learned at all?
SEARCH_K = 5  # results shown by the search example
RESULT_VERSION = 3  # bump when evaluate_run adds numbers, so cached runs are evaluated again


@dataclass(frozen=True)
class RunSpec:
    """One row of the table: a method, maybe with overrides (a control)."""

    method: str
    overrides: tuple[tuple[str, object], ...] = ()


RUNS: dict[str, RunSpec] = {
    "zeroshot": RunSpec("zeroshot"),
    "full": RunSpec("full"),
    "vop": RunSpec("vop"),
    "vop-p": RunSpec("vop-p"),
    "vop-f": RunSpec("vop-f"),
    "vop-fc": RunSpec("vop-fc"),
    # K1, the control: vop-f whose frame positional embedding stays zero sees frames as a set
    "vop-f-nopos": RunSpec("vop-f", (("frame_position", False),)),
}
DEFAULT_RUNS = tuple(RUNS)


def run_spec(name: str) -> RunSpec:
    """A row of :data:`RUNS`, or any method of ``vop methods`` by name."""
    from vop.model import list_methods

    if name in RUNS:
        return RUNS[name]
    if name in list_methods():
        return RunSpec(name)
    raise KeyError(f"unknown method {name!r}; known: {', '.join(list(RUNS) + list_methods())}")


@functools.lru_cache(maxsize=1)
def backbone_sha256() -> str:
    """The bundled backbone's weights sha256 (from its record): runs made on other weights are not reused."""
    from vop.demo.pretrain import DEFAULT_ASSETS

    return json.loads((DEFAULT_ASSETS / f"{BACKBONE}.json").read_text())["weights_sha256"]


@dataclass(frozen=True)
class DemoSettings:
    """Everything that decides the demo's numbers (hashed, so finished runs are reused)."""

    methods: tuple[str, ...] = DEFAULT_RUNS
    seeds: tuple[int, ...] = (0,)
    data_seed: int = 0
    pairs: tuple[int, int, int] = (300, 100, 150)  # reverse pairs in train / val / test
    updates: int = 600
    batch_size: int = 16  # clips; a clip and its reversed partner share a batch (group_batches)
    validate_every: int = 50  # updates
    select: str = "t2v_rsum"  # validation R@1+R@5+R@10 picks the adapter (R@1 alone is a coin flip for order-free runs)
    lr: dict = field(default_factory=lambda: {"full": 6e-4, "default": 6e-2})  # on validation: README
    weight_decay: float = 0.2
    threads: int = 1  # torch threads per run
    jobs: int = 2  # runs trained at once, each in its own process (2 x 1 thread fills 2 cores best)

    def lr_for(self, method: str) -> float:
        return self.lr.get(method, self.lr["default"])

    def key(self, name: str, seed: int, spec: RunSpec | None = None, backbone_sha: str | None = None) -> str:
        """``spec``: the run's method and values (default: ``run_spec(name)``); ``backbone_sha``: the
        weights it trains on (default: the bundled backbone's)."""
        blob = {k: v for k, v in asdict(self).items() if k not in ("methods", "seeds", "threads", "jobs")}
        spec = spec or run_spec(name)
        blob.update(run=name, method=spec.method, overrides=list(spec.overrides), seed=seed,
                    lr=self.lr_for(spec.method), result_version=RESULT_VERSION, world=WorldSpec().__repr__(),
                    backbone=backbone_sha or backbone_sha256())
        return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


SETTINGS = {
    "full": DemoSettings(),
    # --quick: the same pipeline on a handful of clips (tests, smoke checks); numbers meaningless
    "quick": DemoSettings(methods=("zeroshot", "vop", "vop-f"), pairs=(6, 4, 4), updates=4, batch_size=4,
                          validate_every=2, jobs=1),
}


# --------------------------------------------------------------------------- one run


def train_config(settings: DemoSettings, world: Path, cache_dir: Path, name: str, seed: int, runs_dir: Path,
                 spec: RunSpec | None = None, backbone: str | None = None):
    """``vop train``'s config of one (run, seed); ``spec`` and ``backbone`` default to ``run_spec(name)``
    and the bundled backbone."""
    from vop.train.config import DataConfig, EvalConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig

    spec = spec or run_spec(name)
    return TrainConfig(
        name=f"{name}-seed{seed}",
        seed=seed,
        model=ModelConfig(backbone=backbone or BACKBONE, method=spec.method, frames=WorldSpec().frames,
                          overrides=dict(spec.overrides)),
        data=DataConfig(dataset="csv", annotations=str(world), videos=str(world), train_split="train",
                        val_split="val", test_split="test", image_size=IMAGE_SIZE, augment=False,
                        cache=str(cache_dir), group_batches=True),
        optim=OptimConfig(lr=settings.lr_for(spec.method), weight_decay=settings.weight_decay, epochs=10_000,
                          batch_size=settings.batch_size),
        eval=EvalConfig(batch_size=128, every_epochs=10_000, every_steps=settings.validate_every,
                        select=settings.select),
        run=RunConfig(out_dir=str(runs_dir), device="cpu", threads=settings.threads, log_every=50,
                      max_steps=settings.updates),
    ).validate()


PAIR_TIE_TOL = 1e-6  # cosine gaps this small are float rounding (the same frames summed in another order)


def pair_accuracy(s_own, s_partner, tol: float = PAIR_TIE_TOL) -> float:
    """% of captions that score their own clip above the reversed partner; a gap within ``tol``
    is a tie (half credit), so an order-free method scores exactly 50."""
    gap = s_own - s_partner
    return float(100 * ((gap > tol).float() + 0.5 * (gap.abs() <= tol).float()).mean())


def caption_scores(model, meta: dict, clip_ids: list[str], video_emb, batch_size: int = 128):
    """Cosine ``[Q, V]`` of every caption of ``clip_ids`` (in order) against the clips
    (``video_emb[i]`` belongs to ``clip_ids[i]``), with each caption's own and partner column."""
    import torch

    from vop.eval.retrieval import encode_texts

    index = {cid: i for i, cid in enumerate(clip_ids)}
    rows = [(text, index[cid], index[meta["by_id"][cid]["partner"]])
            for cid in clip_ids for text in meta["by_id"][cid]["captions"]]
    text_emb = encode_texts(model, [r[0] for r in rows], batch_size, torch.device("cpu"), progress=False)
    own, partner = torch.tensor([r[1] for r in rows]), torch.tensor([r[2] for r in rows])
    return text_emb @ video_emb.t(), own, partner


def temporal_breakdown(model, meta: dict, clip_ids: list[str], video_emb, batch_size: int = 128) -> dict:
    """Order-free R@1 (the partner also correct) and pair accuracy of every caption of ``clip_ids``
    (``video_emb[i]`` belongs to ``clip_ids[i]``)."""
    from vop.eval.metrics import retrieval_metrics

    sim, own, partner = caption_scores(model, meta, clip_ids, video_emb, batch_size)
    order_free = retrieval_metrics(sim, [[o, p] for o, p in zip(own.tolist(), partner.tolist())])
    s_own, s_partner = sim.gather(1, own[:, None])[:, 0], sim.gather(1, partner[:, None])[:, 0]
    return {"order_free": order_free, "pair_accuracy": pair_accuracy(s_own, s_partner)}


def encode_clips(model, records, cache) -> tuple[list[str], object]:
    """Clip ids and their embeddings ``[V, E]``; every generated clip must decode."""
    import torch

    from vop.eval.retrieval import encode_videos

    video_emb, kept = encode_videos(model, records, IMAGE_SIZE, 128, torch.device("cpu"), cache=cache, progress=False)
    if len(kept) != len(records):
        raise RuntimeError(f"{len(records) - len(kept)} generated clips failed to decode")
    return [Path(records[i].video_id).stem for i in kept], video_emb


def _breakdown_of(model, records, cache, meta: dict) -> dict:
    return temporal_breakdown(model, meta, *encode_clips(model, records, cache))


def evaluate_run(run_dir: Path, clip, world: Path, cache, meta: dict, settings: DemoSettings) -> dict:
    """Test-split metrics of the adapter validation selected, the temporal breakdown on the test
    clips and on the first training clips, the budget and the adapter's size."""
    from vop.adapter import WEIGHTS_FILE, load_adapter
    from vop.data.annotations import load_records
    from vop.eval.metrics import SELECT_SCORES
    from vop.eval.retrieval import evaluate

    model = load_adapter(run_dir / "adapter", clip)
    records = load_records("csv", world, split="test", videos_dir=world)
    result = evaluate(model, records, image_size=IMAGE_SIZE, batch_size=128, cache=cache, device="cpu",
                      progress=False)
    result["breakdown"] = _breakdown_of(model, records, cache, meta)
    train_records = load_records("csv", world, split="train", videos_dir=world)[:TRAIN_CHECK_CLIPS]
    result["train_breakdown"] = _breakdown_of(model, train_records, cache, meta)
    result["budget"] = model.parameter_budget()
    result["adapter_bytes"] = (run_dir / "adapter" / WEIGHTS_FILE).stat().st_size
    selected = json.loads((run_dir / "adapter" / "adapter.json").read_text()).get("extra", {})
    result["selected_step"] = selected.get("step", 0)
    validation = selected.get("validation", {})
    result["val_t2v_R@1"] = validation.get("t2v", {}).get("R@1")
    result["val_score"] = SELECT_SCORES[settings.select](validation) if validation else None
    return result


def run_one(settings: DemoSettings, world: Path, cache_dir: Path, meta: dict, clip, name: str, seed: int,
            runs_dir: Path, log=print, spec: RunSpec | None = None, backbone: str | None = None) -> dict:
    """Train + evaluate one (run, seed); a finished run with the same settings is reused. ``spec``
    (default ``run_spec(name)``) and ``backbone`` (a file; default the bundled one, which ``clip``
    must be loaded from) let a caller train a run that :data:`RUNS` does not name."""
    from vop.data.cache import FrameCache
    from vop.train.loop import train

    spec = spec or run_spec(name)
    backbone_sha = clip.weights_sha256 if backbone else None
    run_dir = runs_dir / f"{name}-seed{seed}"
    cached = finished_run(settings, name, seed, runs_dir, spec, backbone_sha)
    if cached is not None:
        log(f"[{name} seed {seed}] reusing {run_dir}")
        return cached
    if run_dir.exists():
        shutil.rmtree(run_dir)  # unfinished or made with other settings: start again
    log(f"[{name} seed {seed}] training -> {run_dir}")
    start = time.perf_counter()
    train(train_config(settings, world, cache_dir, name, seed, runs_dir, spec, backbone), run_dir=run_dir,
          show_progress=False)
    seconds = time.perf_counter() - start
    result = evaluate_run(run_dir, clip, world, FrameCache(cache_dir), meta, settings)
    result.update(key=settings.key(name, seed, spec, backbone_sha), name=name, method=spec.method, seed=seed,
                  train_seconds=seconds, run_dir=str(run_dir))
    (run_dir / "demo_result.json").write_text(json.dumps(result, indent=1))
    return {**result, "reused": False}


def finished_run(settings: DemoSettings, name: str, seed: int, runs_dir: Path, spec: RunSpec | None = None,
                 backbone_sha: str | None = None) -> dict | None:
    """The saved result of (run, seed) if it was made with these settings, else None."""
    done = runs_dir / f"{name}-seed{seed}" / "demo_result.json"
    if done.is_file():
        cached = json.loads(done.read_text())
        if cached.get("key") == settings.key(name, seed, spec, backbone_sha):
            return {**cached, "reused": True}
    return None


# --------------------------------------------------------------------------- the whole demo


def world_records(world: Path) -> list:
    """Every clip of the world (train, val, test), as the generic reader gives them."""
    from vop.data.annotations import load_records

    return [r for split in ("train", "val", "test") for r in load_records("csv", world, split, world)]


def prepare_cache(world: Path, cache_dir: Path, progress: bool) -> Path:
    """Decode every clip once (``vop prepare``'s cache), all of its frames."""
    from vop.data.cache import build_cache

    build_cache(world_records(world), cache_dir, frames=WorldSpec().frames, short_side=IMAGE_SIZE, on_error="raise",
                progress=progress)
    return cache_dir


def run_demo(settings: DemoSettings, out_dir: Path, log=print, progress: bool = True) -> dict:
    """World -> every (run, seed) -> claims -> ``results.{json,md,png}`` in ``out_dir``."""
    import torch

    from vop.backbone.loading import load_clip
    from vop.demo import claims
    from vop.demo.world import generate_world, load_metadata

    torch.set_num_threads(settings.threads * max(1, settings.jobs))  # the runs' workers have their own
    out_dir = Path(out_dir)
    start = time.perf_counter()
    train_pairs, val_pairs, test_pairs = settings.pairs
    world = generate_world(out_dir / f"world-{settings.data_seed}", seed=settings.data_seed,
                           sizes=SplitPairs(train_pairs, val_pairs, test_pairs), progress=progress)
    meta = load_metadata(world)
    log(f"world: {world} (seed {settings.data_seed}; {train_pairs}/{val_pairs}/{test_pairs} reverse pairs "
        "in train/val/test)")
    cache_dir = prepare_cache(world, out_dir / f"cache-{settings.data_seed}", progress)
    clip = load_clip(BACKBONE)
    backbone = claims.backbone_checks(clip, world, meta, cache_dir, settings.batch_size)
    runs = run_all(settings, world, cache_dir, meta, clip, out_dir / f"runs-{settings.data_seed}", log)
    summary = summarize(runs, settings)
    summary.update(settings=asdict(settings), world=str(world), backbone=BACKBONE,
                   backbone_sha256=clip.weights_sha256, backbone_checks=backbone,
                   total_seconds=time.perf_counter() - start, machine=machine_note(settings.threads, settings.jobs))
    summary["claims"] = [asdict(c) for c in claims.check(summary)]
    summary["search_example"] = search_example(summary, clip, world, meta, cache_dir)
    write_outputs(summary, out_dir)
    return summary


def _run_in_worker(settings: DemoSettings, world: Path, cache_dir: Path, name: str, seed: int,
                   runs_dir: Path) -> dict:
    """:func:`run_one` in a fresh process (``spawn``): its own torch threads, backbone and metadata."""
    import torch

    from vop.backbone.loading import load_clip
    from vop.demo.world import load_metadata

    torch.set_num_threads(settings.threads)
    return run_one(settings, world, cache_dir, load_metadata(world), load_clip(BACKBONE), name, seed, runs_dir)


def run_all(settings: DemoSettings, world: Path, cache_dir: Path, meta: dict, clip, runs_dir: Path,
            log=print) -> list[dict]:
    """Every (run, seed) of ``settings``, ``settings.jobs`` at a time; results in the order of
    ``settings.seeds`` x ``settings.methods``. With ``jobs > 1`` each run trains in a worker process."""
    todo = [(name, seed) for seed in settings.seeds for name in settings.methods]
    results = {job: finished_run(settings, *job, runs_dir) for job in todo}
    fresh = [job for job, result in results.items() if result is None]
    for name, seed in todo:
        if results[name, seed] is not None:
            log(f"[{name} seed {seed}] reusing {runs_dir / f'{name}-seed{seed}'}")
    if settings.jobs <= 1 or len(fresh) <= 1:
        for job in fresh:
            results[job] = run_one(settings, world, cache_dir, meta, clip, *job, runs_dir, log)
        return [results[job] for job in todo]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(min(settings.jobs, len(fresh)), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {job: pool.submit(_run_in_worker, settings, world, cache_dir, *job, runs_dir) for job in fresh}
        for job, future in futures.items():
            results[job] = future.result()
    return [results[job] for job in todo]


def machine_note(threads: int, jobs: int = 1) -> str:
    import os
    import platform

    import torch

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{os.cpu_count()}-core CPU ({platform.machine()}), torch {torch.__version__}, {jobs} runs at once x "
            f"{threads} thread{'s' if threads > 1 else ''}; "
            f"load average {load} at the end")


# --------------------------------------------------------------------------- reporting

METRICS = ("R@1", "R@5", "R@10", "MdR", "MnR")


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarize(runs: list[dict], settings: DemoSettings) -> dict:
    """One row per run name: mean (and std over seeds) of every number."""
    rows = []
    for name in settings.methods:
        mine = [r for r in runs if r["name"] == name]
        row = {"method": name, "seeds": [r["seed"] for r in mine], "trainable": mine[0]["budget"]["trainable"],
               "percent": mine[0]["budget"]["percent"], "adapter_bytes": mine[0]["adapter_bytes"]}
        values = {f"{d}_{m}": [r[d][m] for r in mine] for d in ("t2v", "v2t") for m in METRICS}
        values["order_free_R@1"] = [r["breakdown"]["order_free"]["R@1"] for r in mine]
        values["pair_accuracy"] = [r["breakdown"]["pair_accuracy"] for r in mine]
        values["train_pair_accuracy"] = [r["train_breakdown"]["pair_accuracy"] for r in mine]
        values["train_seconds"] = [r["train_seconds"] for r in mine]
        values["val_t2v_R@1"] = [r.get("val_t2v_R@1") or 0.0 for r in mine]
        values["val_score"] = [r.get("val_score") or 0.0 for r in mine]
        for key, vals in values.items():
            row[key], row[key + "_std"] = _mean_std(vals)
        rows.append(row)
    return {"rows": rows, "runs": runs}


def _fmt(row: dict, name: str, digits: int = 1) -> str:
    std = row.get(name + "_std", 0.0)
    return f"{row[name]:.{digits}f}" + (f" ± {std:.{digits}f}" if len(row["seeds"]) > 1 else "")


def format_table(summary: dict) -> str:
    """Markdown table of the summary rows."""
    head = ["method", "trainable", "%", "adapter", "t2v R@1", "R@5", "R@10", "MdR", "MnR",
            "v2t R@1", "R@5", "R@10", "MdR", "MnR", "order-free R@1", "pair acc", "train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in summary["rows"]:
        cells = [r["method"], f"{r['trainable']:,}", f"{r['percent']:.3f}", f"{r['adapter_bytes'] / 1024:.1f} KB"]
        cells += [_fmt(r, f"t2v_{m}") for m in METRICS] + [_fmt(r, f"v2t_{m}") for m in METRICS]
        cells += [_fmt(r, "order_free_R@1"), _fmt(r, "pair_accuracy"), _fmt(r, "train_seconds", 0)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def search_example(summary: dict, clip, world: Path, meta: dict, cache_dir: Path) -> dict:
    """The trained adapter with the best *validation* score (``DemoSettings.select``), and what it
    finds among all the world's videos (what the printed ``vop index`` command indexes) for a test
    caption that only one clip fits: the first test clip whose scene (shape, colour, size, event
    and direction) no other clip of the world shares, worded by its first caption. A caption that
    several clips fit equally has no single right answer to show."""
    from collections import Counter

    import torch

    from vop.adapter import load_adapter
    from vop.data.cache import FrameCache
    from vop.demo.claims import CONTROLS
    from vop.demo.world import VIDEO_TEMPLATES, caption
    from vop.eval.retrieval import encode_texts

    trained = [r for r in summary["rows"] if r["trainable"] > 0 and r["method"] not in CONTROLS]
    if not trained:
        return {}
    best = max(trained, key=lambda r: r["val_score"])  # the score that selected each run's adapter
    run = next(r for r in summary["runs"] if r["name"] == best["method"])
    model = load_adapter(Path(run["run_dir"]) / "adapter", clip)
    ids, video_emb = encode_clips(model, world_records(world), FrameCache(cache_dir))
    scene = {cid: caption(meta["by_id"][cid]["scene"], VIDEO_TEMPLATES[0], None) for cid in ids}
    fits = Counter(scene.values())
    test = [cid for cid in ids if meta["by_id"][cid]["split"] == "test"]
    single = [cid for cid in test if fits[scene[cid]] == 1] or test[:1]  # test clips only one caption fits
    queries = [meta["by_id"][cid]["captions"][0] for cid in single]
    scores = encode_texts(model, queries, 128, torch.device("cpu"), progress=False) @ video_emb.t()  # [Q, V]
    order = scores.argsort(dim=1, descending=True)
    rank = {cid: i for i, cid in enumerate(ids)}
    ranks = [int((order[q] == rank[cid]).nonzero()) + 1 for q, cid in enumerate(single)]
    target, query, ranking = single[0], queries[0], [ids[i] for i in order[0].tolist()]
    partner = meta["by_id"][target]["partner"]
    index = Path(summary["world"]).parent / f"index-{best['method']}"
    return {"method": best["method"], "adapter": str(Path(run["run_dir"]) / "adapter"), "query": query,
            "target": target, "partner": partner, "top": ranking[:SEARCH_K],
            "target_rank": ranks[0], "partner_rank": ranking.index(partner) + 1,
            "single_queries": len(single), "found_in_top_k": sum(r <= SEARCH_K for r in ranks),
            "videos": len(ids),
            "commands": [(f"vop index {world / 'videos'} --backbone {BACKBONE} --adapter "
                         f"{Path(run['run_dir']) / 'adapter'} --cache {cache_dir} --out {index}"),
                         f'vop search {index} "{query}" -k {SEARCH_K}']}


def write_outputs(summary: dict, out_dir: Path) -> None:
    from vop.demo import claims

    (out_dir / "results.json").write_text(json.dumps(summary, indent=1))
    s = summary["settings"]
    md = (f"# vop demo results\n\nbackbone `{BACKBONE}`, world seed {s['data_seed']}, {s['updates']} updates of "
          f"batch {s['batch_size']} (reverse pairs kept together), training seeds {list(s['seeds'])}, pairs "
          f"train/val/test {list(s['pairs'])}; {summary['machine']}; **total {summary['total_seconds']:.0f} s**\n\n"
          + format_table(summary) + "\n\n## Claims\n\n" + claims.format_claims(summary["claims"]) + "\n")
    (out_dir / "results.md").write_text(md)
    claims.write_chart(summary, out_dir / "results.png")


def with_overrides(settings: DemoSettings, methods=None, seeds=None, threads=None, data_seed=None,
                   jobs=None) -> DemoSettings:
    changes = {k: tuple(v) if isinstance(v, list) else v
               for k, v in (("methods", methods), ("seeds", seeds), ("threads", threads), ("jobs", jobs)) if v}
    if data_seed is not None:
        changes["data_seed"] = data_seed
    return replace(settings, **changes)
