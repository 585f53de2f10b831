"""Everything ``vop.train.loop.train`` needs before its first step, and the resume state.

``set_up(cfg, run_dir, resume)`` checks the run folder, builds the model (backbone + method), reads
the splits, opens the frame cache, builds the training loader, optimiser and schedule, restores a
checkpoint when resuming and wraps the model for DDP; it returns them as one :class:`TrainingRun`.
The image size and the text length are the backbone's (``clip.cfg``): a recipe only repeats them
at the risk of disagreeing, and an image size that differs is an error (:class:`RecipeConflictError`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from vop.train import distributed as dist_utils
from vop.train.checkpoint import load_checkpoint, rng_state, set_rng_state
from vop.train.config import TrainConfig
from vop.train.optim import build_optimizer, build_scheduler
from vop.train.plots import read_metrics
from vop.train.sampler import ShardedEpochSampler


class RecipeConflictError(ValueError):
    """The recipe states a value that the backbone owns, and states it differently."""


@dataclass
class Progress:
    """What a checkpoint must restore besides tensors."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0          # batches of `epoch` already done
    best_r1: float = float("-inf")  # the best validation score (eval.select; t2v R@1 by default)
    best_step: int = -1
    history: list = field(default_factory=list)


class RunLog:
    """Log lines to stdout (through tqdm, so progress bars stay intact) and, on rank 0, train.log."""

    def __init__(self, run_dir: Path, is_main: bool):
        self.run_dir, self.is_main = run_dir, is_main

    def line(self, msg: str) -> None:
        if not self.is_main:
            return
        from tqdm import tqdm

        from vop.cli.messages import shown

        msg = shown(msg)  # lines may quote a video's file name: escaped in the terminal and the log
        tqdm.write(msg)
        with open(self.run_dir / "train.log", "a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}\n")

    def record(self, row: dict) -> None:
        if self.is_main:
            with open(self.run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")


class DualEncoder(nn.Module):
    """One forward for both towers, so DDP sees every trainable tensor used in ``forward``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor, video: torch.Tensor):
        return self.model.encode_text(tokens), self.model.encode_video(video)


@dataclass
class TrainingRun:
    """What ``set_up`` built. Without trainable parameters the training half stays None."""

    cfg: TrainConfig
    info: dist_utils.DistInfo
    device: torch.device
    run_dir: Path
    log: RunLog
    model: nn.Module
    image_size: int                  # the backbone's
    train_records: list
    val_records: list
    cache: object | None
    progress: Progress
    dataset: object | None = None
    sampler: ShardedEpochSampler | None = None
    loader: object | None = None
    total: int = 0                   # optimiser steps in the whole schedule
    optimizer: torch.optim.Optimizer | None = None
    scheduler: object | None = None
    ddp_model: nn.Module | None = None  # DualEncoder, DDP-wrapped under torchrun


# --------------------------------------------------------------------------- pieces


def pick_device(name: str, info: dist_utils.DistInfo) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        return torch.device("cuda", info.local_rank)
    return torch.device(name)


def prepare_run_dir(cfg: TrainConfig, run_dir: Path, resume: bool, info: dist_utils.DistInfo) -> None:
    last = run_dir / "checkpoints" / "last.pt"
    if not resume and last.exists():
        raise FileExistsError(f"{run_dir} already holds a run; pass --resume to continue it or --out for a new one")
    if resume and not last.exists():
        raise FileNotFoundError(f"--resume: no checkpoint at {last}")
    if info.is_main:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    dist_utils.barrier()


def build_for_training(cfg: TrainConfig):
    """Backbone + method from the config; the method's init is seeded by ``cfg.seed``."""
    from vop.backbone.reference import resolve_backbone
    from vop.model import build_model

    clip = resolve_backbone(None, cfg.model.backbone)
    model = build_model(clip, cfg.model.method, cfg.model.frames, overrides=dict(cfg.model.overrides),
                        seed=cfg.seed, context_length=cfg.data.context_length)
    if cfg.model.grad_checkpointing:
        model.clip.set_grad_checkpointing(True)
    return model


def backbone_image_size(cfg: TrainConfig, clip_cfg) -> int:
    """The backbone's image size; ``data.image_size`` may only repeat it (positional embeddings fix it)."""
    size = clip_cfg.vision.image_size
    if cfg.data.image_size is not None and cfg.data.image_size != size:
        raise RecipeConflictError(
            f"data.image_size is {cfg.data.image_size} but the backbone {cfg.model.backbone} ({clip_cfg.name}) "
            f"takes {size} px images; leave data.image_size out (the backbone's config owns it)")
    return size


def load_splits(cfg: TrainConfig, log: RunLog):
    """Training and validation records; videos without a file are dropped with a count."""
    from vop.data.annotations import holdout_ids, load_records

    d = cfg.data
    train_recs = load_records(d.dataset, d.annotations, d.train_split, d.videos)
    if d.val_split is not None:
        val_recs = load_records(d.dataset, d.annotations, d.val_split, d.videos)
    elif d.val_holdout > 0:
        held = holdout_ids([r.video_id for r in train_recs], fraction=1.0, maximum=d.val_holdout)
        val_recs = [r for r in train_recs if r.video_id in held]
        train_recs = [r for r in train_recs if r.video_id not in held]
    else:
        val_recs = []
    overlap = {r.video_id for r in train_recs} & {r.video_id for r in val_recs}
    if overlap:
        raise ValueError(f"{len(overlap)} videos are in both the training and the validation split, "
                         f"e.g. {min(overlap)!r}")
    out = []
    for name, recs in (("train", train_recs), ("validation", val_recs)):
        missing = [r.video_id for r in recs if r.path is None]
        if missing:
            log.line(f"{name}: {len(missing)} of {len(recs)} videos not found under {d.videos}, "
                     f"skipped (e.g. {missing[0]!r})")
        out.append([r for r in recs if r.path is not None])
    return out


def open_cache(cfg: TrainConfig):
    if not cfg.data.cache:
        return None
    from vop.data.cache import FrameCache

    return FrameCache(cfg.data.cache)


def batch_groups(records) -> list[str]:
    """Group label per training record for ``data.group_batches``; a record without one is its own group."""
    if not any(r.group for r in records):
        raise ValueError("data.group_batches is on but no training video has a group "
                         "(add a `group` column/key to the csv/jsonl annotations)")
    return [r.group or f"\0{r.video_id}" for r in records]


def training_loader(cfg: TrainConfig, records, info: dist_utils.DistInfo, cache, context_length: int,
                    log: RunLog, image_size: int):
    """The training loader (``vop.data.dataset.make_loader``, which evaluation uses too) over this
    rank's share; captions are tokenized to ``context_length``, the model's. Every batch is yielded,
    empty ones too (DDP ranks step together); undecodable videos are reported to the run log."""
    from vop.data.dataset import VideoTextDataset, make_loader

    ds = VideoTextDataset(records, frames=cfg.model.frames, image_size=image_size, train=True,
                          seed=cfg.seed, cache=cache, on_error=cfg.data.on_error,
                          context_length=context_length, augment=cfg.data.augment)
    sampler = ShardedEpochSampler(len(ds), cfg.optim.batch_size, info.rank, info.world_size, cfg.seed,
                                  groups=batch_groups(records) if cfg.data.group_batches else None)
    loader = make_loader(ds, sampler.local_batch, num_workers=cfg.data.num_workers, sampler=sampler,
                         keep_empty=True, report=log.line)
    return ds, sampler, loader


# --------------------------------------------------------------------------- resume state


def checkpoint_state(model, optimizer, scheduler, progress: Progress, cfg: TrainConfig, world: int) -> dict:
    """What ``checkpoints/last.pt`` holds (``vop.train.checkpoint.check_resume_state`` checks it back)."""
    return {
        "trainable": {n: p.detach().cpu().clone() for n, p in model.trainable_named_parameters()},
        "optimizer": optimizer.state_dict() if optimizer is not None else {},
        "scheduler": scheduler.state_dict() if scheduler is not None else {},
        "progress": {"step": progress.step, "epoch": progress.epoch, "batch_in_epoch": progress.batch_in_epoch,
                     "best_r1": progress.best_r1, "best_step": progress.best_step},
        "rng": rng_state(),
        "config": cfg.to_dict(),
        "world_size": world,
    }


def restore(path: Path, model, optimizer, scheduler, cfg: TrainConfig) -> Progress:
    """Load a resume checkpoint into the model, optimiser, schedule and RNGs; returns its progress."""
    from vop.backbone.loading import check_finite
    from vop.train.checkpoint import CheckpointFileError, check_resume_state

    state = check_resume_state(load_checkpoint(path), path)
    if state["config"].get("model") != cfg.to_dict()["model"]:
        raise ValueError(f"{path}: the checkpoint was made with model config {state['config'].get('model')}, "
                         f"not {cfg.to_dict()['model']}; resume with the same recipe")
    # the best score so far was measured by the checkpoint's eval.select (t2v R@1 before it existed)
    was = (state["config"].get("eval") or {}).get("select", "t2v_R@1")
    if was != cfg.eval.select:
        raise ValueError(f"{path}: the checkpoint selects its adapter by eval.select={was}, not "
                         f"{cfg.eval.select}; its best score so far would not compare. Resume with "
                         f"eval.select={was}, or start a new run")
    params = dict(model.trainable_named_parameters())
    if set(params) != set(state["trainable"]):
        raise ValueError(f"{path}: trainable tensors do not match the method")
    check_finite(state["trainable"], str(path), error=CheckpointFileError)
    try:
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(state["trainable"][n])
        if optimizer is not None:
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        return Progress(**state["progress"])
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as err:
        raise CheckpointFileError(
            f"{path}: damaged resume checkpoint ({type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''})"
        ) from None


def truncate_metrics(run_dir: Path, step: int) -> None:
    """Forget records written after the checkpoint, so a resumed run's log reads as one run."""
    rows = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["step"] <= step]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


# --------------------------------------------------------------------------- all of it


def set_up(cfg: TrainConfig, run_dir: str | Path | None = None, resume: bool = False) -> TrainingRun:
    """Run folder, model, data, optimiser, schedule and resume state, in that order (see the module)."""
    cfg.validate()
    info = dist_utils.current()
    device = pick_device(cfg.run.device, info)
    run_dir = Path(run_dir) if run_dir is not None else Path(cfg.run.out_dir) / cfg.name
    prepare_run_dir(cfg, run_dir, resume, info)
    log = RunLog(run_dir, info.is_main)

    model = build_for_training(cfg).to(device)
    image_size = backbone_image_size(cfg, model.clip.cfg)
    log.line(model.budget_line())
    train_recs, val_recs = load_splits(cfg, log)
    if not val_recs:
        log.line("no validation split configured: adapter/ will hold the last step, not a selected one")
    run = TrainingRun(cfg, info, device, run_dir, log, model, image_size, train_recs, val_recs,
                      cache=open_cache(cfg), progress=Progress())
    trainable = model.trainable_named_parameters()
    if not trainable:
        return run

    run.dataset, run.sampler, run.loader = training_loader(cfg, train_recs, info, run.cache, model.context_length,
                                                           log, image_size)
    run.total = cfg.optim.epochs * run.sampler.batches_per_epoch
    if cfg.run.max_steps > 0:
        run.total = min(run.total, cfg.run.max_steps)
    run.optimizer = build_optimizer(trainable, cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.betas, cfg.optim.eps)
    run.scheduler = build_scheduler(run.optimizer, run.total, cfg.optim.warmup_fraction)
    if resume:
        run.progress = restore(run_dir / "checkpoints" / "last.pt", model, run.optimizer, run.scheduler, cfg)
        if info.is_main:
            truncate_metrics(run_dir, run.progress.step)
        p = run.progress
        log.line(f"resumed from step {p.step} (epoch {p.epoch}, batch {p.batch_in_epoch})")
    log.line(f"{len(train_recs)} training videos, {len(val_recs)} validation videos, "
             f"{run.sampler.batches_per_epoch} steps per epoch, {run.total} steps, global batch "
             f"{cfg.optim.batch_size} over {info.world_size} rank(s), device {device}")

    run.ddp_model = DualEncoder(model)
    if info.enabled:
        run.ddp_model = nn.parallel.DistributedDataParallel(
            run.ddp_model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=cfg.run.find_unused_parameters)
    return run
