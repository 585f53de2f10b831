"""``vop demo``: the synthetic temporal benchmark, end to end, on the bundled tiny CLIP.

Steps (each through the project's real code, nothing demo-specific in between):

1. generate (or reuse) the dataset with :func:`vop.data.synthetic.generate_dataset`;
2. for every seed and method, ``vop.train.loop.train`` a run (the same loss, optimiser,
   schedule and validation-based adapter selection as ``vop train``) on the bundled
   ``tiny-synthetic`` backbone;
3. load the selected adapter with ``vop.adapter.load_adapter`` and score the test split with
   ``vop.eval.retrieval.evaluate`` (t2v queries are the temporal captions; see
   ``vop.data.synthetic.ANNOTATED_KINDS``);
4. add two numbers the standard protocol cannot show (:func:`temporal_breakdown`): static-caption
   R@1, where both clips of a reverse pair are correct, and **pair accuracy**, the share of
   temporal captions that score their own clip above its time-reversed partner (50% is chance,
   and exactly what mean pooling of per-frame embeddings gets on identical frame sets);
5. write ``results.json``, ``results.md`` and ``results.png`` and print the table.

Training settings (epochs, batch, learning rates) live in :data:`SETTINGS` as data. They were
set from validation curves only (never test), and only lightly: a first run of every method
at 5e-3 (prompts) / 1e-4 (full), batch 32, 5 epochs was still improving at its last step, so
the prompts' rate was doubled and the batch halved (more updates for the same compute); one
vop-f run at 1e-2, batch 16 peaked on validation around step 150. No search beyond that.
``group_batches`` (on) keeps every clip and its reversed partner in one batch
(``data.group_batches``, groups from the generated ``group`` column); the loss is unchanged.
The whole default demo is sized to finish in about 10 minutes on 2 CPU cores.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from vop.data.synthetic import SplitSizes, SyntheticSpec

BACKBONE = "tiny-synthetic"
IMAGE_SIZE = 64  # the backbone's input size; the synthetic videos are drawn at this size
TRAIN_CHECK_CLIPS = 200  # training clips (complete reverse pairs) scored too: is order learned at all?
RESULT_VERSION = 2  # bump when evaluate_run adds numbers, so cached runs are evaluated again
DEFAULT_METHODS = ("zeroshot", "full", "vop", "vop-p", "vop-f", "vop-fc")


@dataclass(frozen=True)
class DemoSettings:
    """Everything that decides the demo's numbers (hashed to reuse finished runs)."""

    methods: tuple[str, ...] = DEFAULT_METHODS
    seeds: tuple[int, ...] = (0,)
    data_seed: int = 0
    pairs: tuple[int, int, int] = (200, 30, 100)  # reverse pairs in train / val / test
    clip_frames: int = 12  # frames per generated clip
    frames: int = 4  # F: 4 segments of 3 frames, so the middle frames of a clip and of its reverse coincide
    epochs: int = 6
    context_length: int = 32  # captions are short; EOT read-out under the causal mask makes this exact
    batch_size: int = 16
    # keep each clip and its time-reversed partner in one batch (a training choice, not a data
    # change): with random batches of 16 out of 400 clips the partner is almost never a negative,
    # so InfoNCE is lowered by static content alone and nothing pushes towards temporal order
    group_batches: bool = True
    lr: dict = field(default_factory=lambda: {"full": 1e-4, "default": 1e-2})
    weight_decay: float = 0.2
    threads: int = 2

    def lr_for(self, method: str) -> float:
        return self.lr.get(method, self.lr["default"])

    def key(self, method: str, seed: int) -> str:
        """Identity of one run: method, seed and every setting that changes its result."""
        blob = {k: v for k, v in asdict(self).items() if k not in ("methods", "seeds", "threads")}
        blob.update(method=method, seed=seed, lr=self.lr_for(method), result_version=RESULT_VERSION)
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]


SETTINGS = {
    "full": DemoSettings(),
    # --quick: the same pipeline on a handful of clips (tests, smoke checks); numbers meaningless
    "quick": DemoSettings(methods=("zeroshot", "vop", "vop-f"), pairs=(6, 2, 4), epochs=1, batch_size=4),
}


# --------------------------------------------------------------------------- one run


def train_config(settings: DemoSettings, data_dir: Path, cache_dir: Path, method: str, seed: int, runs_dir: Path):
    from vop.train.config import DataConfig, EvalConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig

    return TrainConfig(
        name=f"{method}-seed{seed}",
        seed=seed,
        model=ModelConfig(backbone=BACKBONE, method=method, frames=settings.frames),
        data=DataConfig(dataset="csv", annotations=str(data_dir), videos=str(data_dir), train_split="train",
                        val_split="val", test_split="test", image_size=IMAGE_SIZE, augment=False,
                        cache=str(cache_dir), context_length=settings.context_length,
                        group_batches=settings.group_batches),
        optim=OptimConfig(lr=settings.lr_for(method), weight_decay=settings.weight_decay, epochs=settings.epochs,
                          batch_size=settings.batch_size),
        eval=EvalConfig(batch_size=64),
        run=RunConfig(out_dir=str(runs_dir), device="cpu", threads=settings.threads, log_every=50),
    ).validate()


PAIR_TIE_TOL = 1e-6  # cosine gaps this small are float rounding (identical frames reversed: ~1e-8), not order


def pair_accuracy(s_own, s_partner, tol: float = PAIR_TIE_TOL) -> float:
    """% of temporal captions that score their own clip above the reversed partner; a gap within
    ``tol`` is a tie (half credit). Mean pooling of the same frames in another order differs only
    by summation rounding, which must not count as seeing time. (In the demo a clip and its
    partner are separate H.264 files whose decoded frames differ slightly, so an order-free
    method's gaps there are codec noise, far above ``tol``: ``benchmarks/demo_partner_gap.py``.)"""
    gap = s_own - s_partner
    return float(100 * ((gap > tol).float() + 0.5 * (gap.abs() <= tol).float()).mean())


def temporal_breakdown(model, meta: dict, test_ids: list[str], video_emb, batch_size: int = 64) -> dict:
    """Static R@1 (pair = correct), temporal R@1, and pair accuracy on the test clips.

    ``video_emb[i]`` belongs to ``test_ids[i]``. Pair accuracy: for each temporal caption,
    1 if it scores its own clip above the reversed partner, 0.5 on a tie (see :func:`pair_accuracy`), else 0.
    """
    import torch

    from vop.eval.metrics import retrieval_metrics
    from vop.eval.retrieval import encode_texts

    index = {cid: i for i, cid in enumerate(test_ids)}
    queries = {"temporal": [], "static": []}  # kind -> [(text, own index, partner index)]
    for cid in test_ids:
        clip = meta["by_id"][cid]
        for cap in clip["captions"]:
            queries[cap["kind"]].append((cap["text"], index[cid], index[clip["partner"]]))
    out = {}
    for kind, rows in queries.items():
        text_emb = encode_texts(model, [r[0] for r in rows], batch_size, torch.device("cpu"), progress=False)
        sim = text_emb @ video_emb.t()  # [Q, V] cosine (both L2-normalised)
        own, partner = torch.tensor([r[1] for r in rows]), torch.tensor([r[2] for r in rows])
        if kind == "static":  # a static caption is true of both clips of its pair
            out["static"] = retrieval_metrics(sim, [[o, p] for o, p in zip(own.tolist(), partner.tolist())])
        else:
            out["temporal"] = retrieval_metrics(sim, own.tolist())
            s_own, s_partner = sim.gather(1, own[:, None])[:, 0], sim.gather(1, partner[:, None])[:, 0]
            out["pair_accuracy"] = pair_accuracy(s_own, s_partner)
    return out


def evaluate_run(run_dir: Path, clip, data_dir: Path, cache, meta: dict) -> dict:
    """Test-split metrics of the adapter that validation selected in ``run_dir``, plus the temporal
    breakdown on the test clips and on the first ``TRAIN_CHECK_CLIPS`` training clips."""

    from vop.adapter import WEIGHTS_FILE, load_adapter
    from vop.data.annotations import load_records
    from vop.eval.retrieval import evaluate

    model = load_adapter(run_dir / "adapter", clip)
    records = load_records("csv", data_dir, split="test", videos_dir=data_dir)
    result = evaluate(model, records, image_size=IMAGE_SIZE, batch_size=64, cache=cache, device="cpu",
                      progress=False)
    result["breakdown"] = _breakdown_of(model, records, cache, meta)
    # rows list a clip and then its partner, so the first N training clips are N/2 whole pairs
    train_records = load_records("csv", data_dir, split="train", videos_dir=data_dir)[:TRAIN_CHECK_CLIPS]
    result["train_breakdown"] = _breakdown_of(model, train_records, cache, meta)
    result["budget"] = model.parameter_budget()
    result["adapter_bytes"] = (run_dir / "adapter" / WEIGHTS_FILE).stat().st_size
    return result


def _breakdown_of(model, records, cache, meta: dict) -> dict:
    import torch

    from vop.eval.retrieval import encode_videos

    video_emb, kept = encode_videos(model, records, IMAGE_SIZE, 64, torch.device("cpu"), cache=cache,
                                    progress=False)
    if len(kept) != len(records):
        raise RuntimeError(f"{len(records) - len(kept)} generated videos failed to decode")
    return temporal_breakdown(model, meta, [Path(records[i].video_id).stem for i in kept], video_emb)


def run_one(settings: DemoSettings, data_dir: Path, cache_dir: Path, meta: dict, clip, method: str, seed: int,
            runs_dir: Path, log=print) -> dict:
    """Train + evaluate one (method, seed); a finished run with the same settings is reused."""
    from vop.data.cache import FrameCache
    from vop.train.loop import train

    run_dir = runs_dir / f"{method}-seed{seed}"
    done = run_dir / "demo_result.json"
    key = settings.key(method, seed)
    if done.is_file():
        cached = json.loads(done.read_text())
        if cached.get("key") == key:
            log(f"[{method} seed {seed}] reusing {run_dir}")
            return cached
    if run_dir.exists():
        shutil.rmtree(run_dir)  # an unfinished or differently-configured run: start again
    log(f"[{method} seed {seed}] training -> {run_dir}")
    start = time.perf_counter()
    train(train_config(settings, data_dir, cache_dir, method, seed, runs_dir), run_dir=run_dir, show_progress=False)
    train_seconds = time.perf_counter() - start
    result = evaluate_run(run_dir, clip, data_dir, FrameCache(cache_dir), meta)
    result.update(key=key, method=method, seed=seed, train_seconds=train_seconds, run_dir=str(run_dir))
    done.write_text(json.dumps(result, indent=1))
    return result


# --------------------------------------------------------------------------- the whole demo


def prepare_cache(data_dir: Path, cache_dir: Path, progress: bool) -> Path:
    """Decode every clip once (``vop prepare``'s cache): epochs then read pixels, not video.

    All frames of a clip are kept, so training and test sampling see exactly the frames they
    would decode from the file.
    """
    from vop.data.annotations import load_records
    from vop.data.cache import build_cache
    from vop.data.synthetic import load_metadata

    frames = load_metadata(data_dir)["spec"]["frames"]
    records = [r for split in ("train", "val", "test") for r in load_records("csv", data_dir, split, data_dir)]
    build_cache(records, cache_dir, frames=frames, short_side=IMAGE_SIZE, on_error="raise", progress=progress)
    return cache_dir


def run_demo(settings: DemoSettings, out_dir: Path, log=print, progress: bool = True) -> dict:
    """Dataset -> every (method, seed) -> ``results.{json,md,png}`` in ``out_dir``; returns the summary."""
    import torch

    from vop.backbone.loading import load_clip
    from vop.data.synthetic import generate_dataset, load_metadata

    torch.set_num_threads(settings.threads)
    out_dir = Path(out_dir)
    start = time.perf_counter()
    train_pairs, val_pairs, test_pairs = settings.pairs
    data_dir = generate_dataset(out_dir / "data", seed=settings.data_seed,
                                sizes=SplitSizes(train=train_pairs, val=val_pairs, test=test_pairs),
                                spec=SyntheticSpec(frames=settings.clip_frames), progress=progress)
    meta = load_metadata(data_dir)
    log(f"dataset: {data_dir} ({train_pairs}/{val_pairs}/{test_pairs} reverse pairs in train/val/test)")
    cache_dir = prepare_cache(data_dir, out_dir / "cache", progress)
    clip = load_clip(BACKBONE)
    runs = [run_one(settings, data_dir, cache_dir, meta, clip, m, s, out_dir / "runs", log)
            for s in settings.seeds for m in settings.methods]
    summary = summarize(runs, settings)
    summary.update(settings=asdict(settings), dataset=str(data_dir), backbone=BACKBONE,
                   backbone_sha256=clip.weights_sha256, total_seconds=time.perf_counter() - start,
                   machine=machine_note(settings.threads))
    write_outputs(summary, out_dir)
    return summary


def machine_note(threads: int) -> str:
    import os
    import platform

    import torch

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{os.cpu_count()}-core CPU ({platform.machine()}), torch {torch.__version__}, {threads} threads; "
            f"load average {load} when the table was written (times depend on other jobs)")


# --------------------------------------------------------------------------- reporting

METRICS = ("R@1", "R@5", "R@10", "MdR", "MnR")


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarize(runs: list[dict], settings: DemoSettings) -> dict:
    """One row per method: mean (and std over seeds) of every number."""
    rows = []
    for method in settings.methods:
        mine = [r for r in runs if r["method"] == method]
        row = {"method": method, "seeds": [r["seed"] for r in mine], "trainable": mine[0]["budget"]["trainable"],
               "percent": mine[0]["budget"]["percent"], "adapter_bytes": mine[0]["adapter_bytes"]}
        values = {f"{d}_{m}": [r[d][m] for r in mine] for d in ("t2v", "v2t") for m in METRICS}
        values["static_R@1"] = [r["breakdown"]["static"]["R@1"] for r in mine]
        values["temporal_R@1"] = [r["breakdown"]["temporal"]["R@1"] for r in mine]
        values["pair_accuracy"] = [r["breakdown"]["pair_accuracy"] for r in mine]
        values["train_pair_accuracy"] = [r["train_breakdown"]["pair_accuracy"] for r in mine]
        values["train_seconds"] = [r["train_seconds"] for r in mine]
        for name, vals in values.items():
            row[name], row[name + "_std"] = _mean_std(vals)
        rows.append(row)
    return {"rows": rows, "runs": runs}


def _fmt(row: dict, name: str, digits: int = 1) -> str:
    std = row.get(name + "_std", 0.0)
    return f"{row[name]:.{digits}f}" + (f" ± {std:.{digits}f}" if len(row["seeds"]) > 1 else "")


def format_table(summary: dict) -> str:
    """Markdown table of the summary rows."""
    head = ["method", "trainable", "%", "adapter", "t2v R@1", "R@5", "R@10", "MdR", "MnR",
            "v2t R@1", "R@5", "R@10", "MdR", "MnR", "static R@1", "pair acc", "train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in summary["rows"]:
        cells = [r["method"], f"{r['trainable']:,}", f"{r['percent']:.3f}", f"{r['adapter_bytes'] / 1024:.1f} KB"]
        cells += [_fmt(r, f"t2v_{m}") for m in METRICS] + [_fmt(r, f"v2t_{m}") for m in METRICS]
        cells += [_fmt(r, "static_R@1"), _fmt(r, "pair_accuracy"), _fmt(r, "train_seconds", 0)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_chart(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary["rows"]
    names = [r["method"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, (key, title, chance) in zip(axes, [("t2v_R@1", "text-to-video R@1 (%)", None),
                                               ("pair_accuracy", "pair accuracy (%): own clip > reversed", 50)]):
        ax.bar(names, [r[key] for r in rows], yerr=[r[key + "_std"] for r in rows], color="#4c72b0")
        if chance:
            ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label="chance")
            ax.legend(loc="lower right")
        ax.set_title(title, fontsize=10)
        ax.tick_params(axis="x", rotation=30)
    fig.suptitle(f"vop demo: synthetic temporal benchmark, backbone {BACKBONE}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(summary: dict, out_dir: Path) -> None:
    (out_dir / "results.json").write_text(json.dumps(summary, indent=1))
    s = summary["settings"]
    md = (f"# vop demo results\n\nbackbone `{BACKBONE}`, {s['frames']} frames, {s['epochs']} epochs, batch "
          f"{s['batch_size']} ({'reverse pairs kept together' if s.get('group_batches') else 'random'}), seeds {list(s['seeds'])}, pairs train/val/test {list(s['pairs'])}; "
          f"{summary['machine']}; total {summary['total_seconds']:.0f} s\n\n" + format_table(summary) + "\n")
    (out_dir / "results.md").write_text(md)
    write_chart(summary, out_dir / "results.png")


def search_commands(summary: dict, out_dir: Path, method: str | None = None) -> list[str]:
    """The commands that index the demo's test videos with one of its adapters and search them."""
    rows = {r["method"]: r for r in summary["rows"]}
    method = method or max(rows, key=lambda m: rows[m]["t2v_R@1"])
    run = next(r for r in summary["runs"] if r["method"] == method)
    index = out_dir / f"index-{method}"
    return [(f"vop index {Path(summary['dataset']) / 'videos'} --backbone {BACKBONE} "
            f"--adapter {Path(run['run_dir']) / 'adapter'} --out {index}"),
            f'vop search {index} "a red circle moves to the left" -k 5']


def with_overrides(settings: DemoSettings, methods=None, seeds=None, threads=None) -> DemoSettings:
    changes = {k: tuple(v) if isinstance(v, list) else v
               for k, v in (("methods", methods), ("seeds", seeds), ("threads", threads)) if v}
    return replace(settings, **changes)


__all__ = [
    "DEFAULT_METHODS",
    "SETTINGS",
    "DemoSettings",
    "format_table",
    "run_demo",
    "search_commands",
    "summarize",
    "temporal_breakdown",
    "with_overrides",
]
