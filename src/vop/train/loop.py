"""The training loop: lr -> forward -> loss -> backward -> clip -> step -> log, nothing hidden.

``train(cfg)`` writes a run folder::

    config.json        the resolved configuration
    train.log          one line per log interval (loss, lr, clips/s) and per validation
    metrics.jsonl      the same as JSON records (kind "train" / "val")
    loss.png, val_r1.png
    adapter/           the trainable tensors of the best checkpoint by validation t2v R@1 (``eval.select``)
    checkpoints/last.pt  everything needed to resume (written atomically)

The process group, if any, is set up by the CLI before ``train`` is called; only rank 0 writes.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from vop.eval.metrics import SELECT_SCORES
from vop.eval.retrieval import autocast_for, evaluate
from vop.train import distributed as dist_utils
from vop.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from vop.train.config import TrainConfig
from vop.train.loss import contrastive_loss
from vop.train.optim import build_optimizer, build_scheduler
from vop.train.plots import read_metrics, write_plots
from vop.train.sampler import ShardedEpochSampler


class TrainingStopped(Exception):
    """Raised by ``run.stop_after``: the run stops right after saving a checkpoint, as if killed."""


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

        tqdm.write(msg)
        with open(self.run_dir / "train.log", "a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}\n")

    def record(self, row: dict) -> None:
        if self.is_main:
            with open(self.run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")


class Meter:
    """Loss and throughput over the steps since the last log line."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.start, self.clips, self.loss, self.steps = time.perf_counter(), 0, 0.0, 0

    def add(self, loss: float, clips: int) -> None:
        self.loss, self.clips, self.steps = self.loss + loss, self.clips + clips, self.steps + 1

    def row(self, step: int, epoch: int, lr: float) -> dict:
        """The log record (loss averaged over ranks: a collective, so every rank calls it)."""
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        return {"kind": "train", "step": step, "epoch": epoch, "lr": lr, "clips_per_s": self.clips / elapsed,
                "loss": dist_utils.mean_over_ranks(self.loss / self.steps)}


def _every(step: int, interval: int) -> bool:
    return interval > 0 and step % interval == 0


class _DualEncoder(nn.Module):
    """One forward for both towers, so DDP sees every trainable tensor used in ``forward``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor, video: torch.Tensor):
        return self.model.encode_text(tokens), self.model.encode_video(video)


# --------------------------------------------------------------------------- setup


def pick_device(name: str, info: dist_utils.DistInfo) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        return torch.device("cuda", info.local_rank)
    return torch.device(name)


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


def batch_groups(records) -> list[str]:
    """Group label per training record for ``data.group_batches``; a record without one is its own group."""
    if not any(r.group for r in records):
        raise ValueError("data.group_batches is on but no training video has a group "
                         "(add a `group` column/key to the csv/jsonl annotations)")
    return [r.group or f"\0{r.video_id}" for r in records]


def training_loader(cfg: TrainConfig, records, info: dist_utils.DistInfo, cache, context_length: int, log: RunLog):
    """The training loader (``vop.data.dataset.make_loader``, which evaluation uses too) over this
    rank's share; captions are tokenized to ``context_length``, the model's. Every batch is yielded,
    empty ones too (DDP ranks step together); undecodable videos are reported to the run log."""
    from vop.data.dataset import VideoTextDataset, make_loader

    ds = VideoTextDataset(records, frames=cfg.model.frames, image_size=cfg.data.image_size, train=True,
                          seed=cfg.seed, cache=cache, on_error=cfg.data.on_error,
                          context_length=context_length, augment=cfg.data.augment)
    sampler = ShardedEpochSampler(len(ds), cfg.optim.batch_size, info.rank, info.world_size, cfg.seed,
                                  groups=batch_groups(records) if cfg.data.group_batches else None)
    loader = make_loader(ds, sampler.local_batch, num_workers=cfg.data.num_workers, sampler=sampler,
                         keep_empty=True, report=log.line)
    return ds, sampler, loader


def open_cache(cfg: TrainConfig):
    if not cfg.data.cache:
        return None
    from vop.data.cache import FrameCache

    return FrameCache(cfg.data.cache)


# --------------------------------------------------------------------------- checkpoints


def _checkpoint_state(model, optimizer, scheduler, progress: Progress, cfg: TrainConfig, world: int) -> dict:
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


def _restore(path: Path, model, optimizer, scheduler, cfg: TrainConfig) -> Progress:
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


def _truncate_metrics(run_dir: Path, step: int) -> None:
    """Forget records written after the checkpoint, so a resumed run's log reads as one run."""
    rows = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["step"] <= step]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


# --------------------------------------------------------------------------- steps


def usable_batch(batch: dict) -> dict | None:
    """Under DDP cut every rank to the smallest batch (the gather needs equal sizes); what did not
    decode is already dropped. None when fewer than two pairs are left (no negatives: no step)."""
    size = dist_utils.min_over_ranks(0 if batch.get("empty") else len(batch["tokens"]))
    if size < 2:
        return None
    return {"tokens": batch["tokens"][:size], "video": batch["video"][:size]}


def train_step(ddp_model, model, batch, optimizer, scheduler, cfg: TrainConfig, device) -> float:
    tokens, video = batch["tokens"].to(device, non_blocking=True), batch["video"].to(device, non_blocking=True)
    with autocast_for(device, cfg.run.precision):
        text_emb, video_emb = ddp_model(tokens, video)
    loss = contrastive_loss(text_emb.float(), video_emb.float(), model.logit_scale().to(device))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.optim.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_([p for _, p in model.trainable_named_parameters()], cfg.optim.grad_clip)
    optimizer.step()
    scheduler.step()
    return float(loss.detach())


def validate(model, val_records, cfg: TrainConfig, device, cache, progress: Progress, log: RunLog,
             run_dir: Path, info: dist_utils.DistInfo) -> None:
    """Rank 0 evaluates on the validation split and keeps the best adapter; the others wait."""
    from vop.adapter import save_adapter

    if info.is_main and val_records:
        res = evaluate(model, val_records, image_size=cfg.data.image_size, batch_size=cfg.eval.batch_size,
                       cache=cache, tie=cfg.eval.tie, chunk=cfg.eval.chunk, device=device,
                       precision=cfg.run.precision, on_error=cfg.data.on_error,
                       num_workers=cfg.data.num_workers, progress=False)
        score = SELECT_SCORES[cfg.eval.select](res)
        log.record({"kind": "val", "step": progress.step, "epoch": progress.epoch,
                    "t2v": res["t2v"], "v2t": res["v2t"], cfg.eval.select: score})
        better = score > progress.best_r1
        shown = "" if cfg.eval.select == "t2v_R@1" else f" {cfg.eval.select} {score:.2f}"
        log.line(f"val step {progress.step}: t2v R@1 {res['t2v']['R@1']:.2f} R@5 {res['t2v']['R@5']:.2f} "
                 f"v2t R@1 {res['v2t']['R@1']:.2f}{shown}" + (" (best so far, adapter saved)" if better else ""))
        if better:
            progress.best_r1, progress.best_step = score, progress.step
            save_adapter(model, run_dir / "adapter", extra={"step": progress.step, "validation": res,
                                                            "run": cfg.name,
                                                            "selected_on": f"validation {cfg.eval.select}"})
    # every rank learns the best score, so their checkpoint progress agrees
    best_r1, best_step = dist_utils.broadcast_from_main([progress.best_r1, float(progress.best_step)])
    progress.best_r1, progress.best_step = best_r1, int(best_step)
    dist_utils.barrier()


# --------------------------------------------------------------------------- the loop


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


def train(cfg: TrainConfig, run_dir: str | Path | None = None, resume: bool = False,
          show_progress: bool = True) -> Path:
    """Train ``cfg`` into ``run_dir`` (default ``run.out_dir/name``); returns the run folder."""
    from tqdm import tqdm

    from vop.adapter import save_adapter

    cfg.validate()
    info = dist_utils.current()
    device = pick_device(cfg.run.device, info)
    run_dir = Path(run_dir) if run_dir is not None else Path(cfg.run.out_dir) / cfg.name
    prepare_run_dir(cfg, run_dir, resume, info)
    log = RunLog(run_dir, info.is_main)

    model = build_for_training(cfg).to(device)
    log.line(model.budget_line())
    train_recs, val_recs = load_splits(cfg, log)
    if not val_recs:
        log.line("no validation split configured: adapter/ will hold the last step, not a selected one")
    cache = open_cache(cfg)
    trainable = model.trainable_named_parameters()
    progress = Progress()

    if not trainable:
        log.line(f"method {cfg.model.method!r} has no trainable parameters: nothing to train, validating only")
        validate(model, val_recs, cfg, device, cache, progress, log, run_dir, info)
        if info.is_main and not val_recs:
            save_adapter(model, run_dir / "adapter", extra={"step": 0, "run": cfg.name})
        return run_dir

    dataset, sampler, loader = training_loader(cfg, train_recs, info, cache, model.context_length, log)
    total = cfg.optim.epochs * sampler.batches_per_epoch
    if cfg.run.max_steps > 0:
        total = min(total, cfg.run.max_steps)
    optimizer = build_optimizer(trainable, cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.betas, cfg.optim.eps)
    scheduler = build_scheduler(optimizer, total, cfg.optim.warmup_fraction)
    if resume:
        progress = _restore(run_dir / "checkpoints" / "last.pt", model, optimizer, scheduler, cfg)
        if info.is_main:
            _truncate_metrics(run_dir, progress.step)
        log.line(f"resumed from step {progress.step} (epoch {progress.epoch}, batch {progress.batch_in_epoch})")
    log.line(f"{len(train_recs)} training videos, {len(val_recs)} validation videos, "
             f"{sampler.batches_per_epoch} steps per epoch, {total} steps, global batch {cfg.optim.batch_size} "
             f"over {info.world_size} rank(s), device {device}")

    ddp_model = _DualEncoder(model)
    if info.enabled:
        ddp_model = nn.parallel.DistributedDataParallel(
            ddp_model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=cfg.run.find_unused_parameters)
    model.train()
    bar = tqdm(total=total, initial=progress.step, desc=cfg.name, disable=not (show_progress and info.is_main))
    meter = Meter()

    def save_last():
        if info.is_main:
            save_checkpoint(run_dir / "checkpoints" / "last.pt",
                            _checkpoint_state(model, optimizer, scheduler, progress, cfg, info.world_size))
        dist_utils.barrier()

    while progress.step < total:
        epoch = progress.epoch
        sampler.set_epoch(epoch, start_batch=progress.batch_in_epoch)
        dataset.set_epoch(epoch)
        for raw in loader:
            batch = usable_batch(raw)
            if batch is None:
                log.line(f"step {progress.step + 1}: fewer than 2 decodable pairs, no update")
                scheduler.step()  # keep the schedule aligned with the step count
            else:
                meter.add(train_step(ddp_model, model, batch, optimizer, scheduler, cfg, device),
                          len(batch["tokens"]) * info.world_size)
            progress.step += 1
            progress.batch_in_epoch += 1
            bar.update(1)
            last = progress.step == total
            if meter.steps and (_every(progress.step, cfg.run.log_every) or last):
                row = meter.row(progress.step, epoch, scheduler.get_last_lr()[0])
                log.record(row)
                log.line(f"step {row['step']}/{total} epoch {epoch} loss {row['loss']:.4f} "
                         f"lr {row['lr']:.3g} {row['clips_per_s']:.1f} clips/s")
                meter.reset()
            end_of_epoch = progress.batch_in_epoch == sampler.batches_per_epoch
            if end_of_epoch:
                progress.epoch, progress.batch_in_epoch = epoch + 1, 0
            if last or _every(progress.step, cfg.eval.every_steps) or (
                    end_of_epoch and _every(progress.epoch, cfg.eval.every_epochs)):
                validate(model, val_recs, cfg, device, cache, progress, log, run_dir, info)
                model.train()
            stop = progress.step == cfg.run.stop_after
            if end_of_epoch or last or stop or _every(progress.step, cfg.run.checkpoint_every):
                save_last()
            if stop:
                bar.close()
                log.line(f"stopping at step {progress.step} (run.stop_after)")
                raise TrainingStopped(f"stopped after step {progress.step}")
            if end_of_epoch or last:
                break
    bar.close()
    if info.is_main:
        if not val_recs:
            save_adapter(model, run_dir / "adapter", extra={"step": progress.step, "run": cfg.name,
                                                            "selected_on": "last step (no validation split)"})
        write_plots(run_dir / "metrics.jsonl", run_dir)
        log.line(f"done: {progress.step} steps; best validation {cfg.eval.select} {progress.best_r1:.2f} at step "
                 f"{progress.best_step}; adapter in {run_dir / 'adapter'}")
    dist_utils.barrier()
    return run_dir
