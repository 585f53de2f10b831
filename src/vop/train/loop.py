"""The training loop: lr -> forward -> loss -> backward -> clip -> step -> log -> validate/save.

``train(cfg)`` writes a run folder::

    config.json        the resolved configuration
    train.log          one line per log interval (loss, lr, clips/s) and per validation
    metrics.jsonl      the same as JSON records (kind "train" / "val")
    loss.png, val_r1.png
    adapter/           the trainable tensors of the best checkpoint by validation t2v R@1 (``eval.select``)
    checkpoints/last.pt  everything needed to resume (written atomically)

Everything built before the first step (run folder, model, data, optimiser, resume state) comes
from ``vop.train.setup.set_up``. The process group, if any, is set up by the CLI before ``train``
is called; only rank 0 writes.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from vop.eval.metrics import SELECT_SCORES
from vop.eval.retrieval import autocast_for, evaluate
from vop.train import distributed as dist_utils
from vop.train.checkpoint import save_checkpoint
from vop.train.config import TrainConfig
from vop.train.loss import contrastive_loss
from vop.train.plots import write_plots
from vop.train.setup import TrainingRun, checkpoint_state, set_up


class TrainingStopped(Exception):
    """Raised by ``run.stop_after``: the run stops right after saving a checkpoint, as if killed."""


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


def usable_batch(batch: dict) -> dict | None:
    """Under DDP cut every rank to the smallest batch (the gather needs equal sizes); what did not
    decode is already dropped. None when fewer than two pairs are left (no negatives: no step)."""
    size = dist_utils.min_over_ranks(0 if batch.get("empty") else len(batch["tokens"]))
    if size < 2:
        return None
    return {"tokens": batch["tokens"][:size], "video": batch["video"][:size]}


def validate(run: TrainingRun) -> None:
    """Rank 0 evaluates on the validation split and keeps the best adapter; the others wait."""
    from vop.adapter import save_adapter

    cfg, progress = run.cfg, run.progress
    if run.info.is_main and run.val_records:
        res = evaluate(run.model, run.val_records, image_size=run.image_size, batch_size=cfg.eval.batch_size,
                       cache=run.cache, tie=cfg.eval.tie, chunk=cfg.eval.chunk, device=run.device,
                       precision=cfg.run.precision, on_error=cfg.data.on_error,
                       num_workers=cfg.data.num_workers, progress=False)
        score = SELECT_SCORES[cfg.eval.select](res)
        run.log.record({"kind": "val", "step": progress.step, "epoch": progress.epoch,
                        "t2v": res["t2v"], "v2t": res["v2t"], cfg.eval.select: score})
        better = score > progress.best_r1
        shown = "" if cfg.eval.select == "t2v_R@1" else f" {cfg.eval.select} {score:.2f}"
        run.log.line(f"val step {progress.step}: t2v R@1 {res['t2v']['R@1']:.2f} R@5 {res['t2v']['R@5']:.2f} "
                     f"v2t R@1 {res['v2t']['R@1']:.2f}{shown}" + (" (best so far, adapter saved)" if better else ""))
        if better:
            progress.best_r1, progress.best_step = score, progress.step
            save_adapter(run.model, run.run_dir / "adapter",
                         extra={"step": progress.step, "validation": res, "run": cfg.name,
                                "selected_on": f"validation {cfg.eval.select}"})
    # every rank learns the best score, so their checkpoint progress agrees
    best_r1, best_step = dist_utils.broadcast_from_main([progress.best_r1, float(progress.best_step)])
    progress.best_r1, progress.best_step = best_r1, int(best_step)
    dist_utils.barrier()


def save_last(run: TrainingRun) -> None:
    """``checkpoints/last.pt`` (rank 0 writes; every rank waits for it)."""
    if run.info.is_main:
        save_checkpoint(run.run_dir / "checkpoints" / "last.pt",
                        checkpoint_state(run.model, run.optimizer, run.scheduler, run.progress, run.cfg,
                                         run.info.world_size))
    dist_utils.barrier()


def validate_only(run: TrainingRun) -> Path:
    """A method with nothing to train (zeroshot): one validation, and its adapter."""
    from vop.adapter import save_adapter

    run.log.line(f"method {run.cfg.model.method!r} has no trainable parameters: nothing to train, validating only")
    validate(run)
    if run.info.is_main and not run.val_records:
        save_adapter(run.model, run.run_dir / "adapter", extra={"step": 0, "run": run.cfg.name})
    return run.run_dir


def finish(run: TrainingRun) -> Path:
    """The last-step adapter when there is no validation split, the plots and the closing line."""
    from vop.adapter import save_adapter

    cfg, p = run.cfg, run.progress
    if run.info.is_main:
        if not run.val_records:
            save_adapter(run.model, run.run_dir / "adapter", extra={"step": p.step, "run": cfg.name,
                                                                    "selected_on": "last step (no validation split)"})
        write_plots(run.run_dir / "metrics.jsonl", run.run_dir)
        run.log.line(f"done: {p.step} steps; best validation {cfg.eval.select} {p.best_r1:.2f} at step "
                     f"{p.best_step}; adapter in {run.run_dir / 'adapter'}")
    dist_utils.barrier()
    return run.run_dir


def train(cfg: TrainConfig, run_dir: str | Path | None = None, resume: bool = False,
          show_progress: bool = True) -> Path:
    """Train ``cfg`` into ``run_dir`` (default ``run.out_dir/name``); returns the run folder."""
    from tqdm import tqdm

    run = set_up(cfg, run_dir, resume)  # run folder, model, data, optimiser, schedule, resume state
    if run.optimizer is None:
        return validate_only(run)
    model, optimizer, scheduler, device, p = run.model, run.optimizer, run.scheduler, run.device, run.progress
    params = [t for _, t in model.trainable_named_parameters()]
    model.train()
    bar = tqdm(total=run.total, initial=p.step, desc=cfg.name, disable=not (show_progress and run.info.is_main))
    meter = Meter()
    steps, updates = 0, 0  # of this session: a run in which no step could update trains nothing

    while p.step < run.total:
        epoch = p.epoch
        run.sampler.set_epoch(epoch, start_batch=p.batch_in_epoch)
        run.dataset.set_epoch(epoch)
        for raw in run.loader:
            batch = usable_batch(raw)
            if batch is None:
                run.log.line(f"step {p.step + 1}: fewer than 2 decodable pairs, no update")
                scheduler.step()  # keep the schedule aligned with the step count
            else:
                # the lr of this step was set by the scheduler's last step (warm-up, then cosine)
                tokens = batch["tokens"].to(device, non_blocking=True)
                video = batch["video"].to(device, non_blocking=True)
                with autocast_for(device, cfg.run.precision):
                    text_emb, video_emb = run.ddp_model(tokens, video)  # forward: [B, E] each
                loss = contrastive_loss(text_emb.float(), video_emb.float(), model.logit_scale().to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.optim.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
                optimizer.step()
                scheduler.step()
                updates += 1
                meter.add(float(loss.detach()), len(tokens) * run.info.world_size)
            p.step += 1
            steps += 1
            p.batch_in_epoch += 1
            bar.update(1)
            last = p.step == run.total

            if meter.steps and (_every(p.step, cfg.run.log_every) or last):
                row = meter.row(p.step, epoch, scheduler.get_last_lr()[0])
                run.log.record(row)
                run.log.line(f"step {row['step']}/{run.total} epoch {epoch} loss {row['loss']:.4f} "
                             f"lr {row['lr']:.3g} {row['clips_per_s']:.1f} clips/s")
                meter.reset()

            end_of_epoch = p.batch_in_epoch == run.sampler.batches_per_epoch
            if end_of_epoch:
                p.epoch, p.batch_in_epoch = epoch + 1, 0
            if last or _every(p.step, cfg.eval.every_steps) or (
                    end_of_epoch and _every(p.epoch, cfg.eval.every_epochs)):
                validate(run)
                model.train()
            stop = p.step == cfg.run.stop_after
            if end_of_epoch or last or stop or _every(p.step, cfg.run.checkpoint_every):
                save_last(run)
            if stop:
                bar.close()
                run.log.line(f"stopping at step {p.step} (run.stop_after)")
                raise TrainingStopped(f"stopped after step {p.step}")
            if end_of_epoch or last:
                break
    bar.close()
    if steps and not updates:  # an adapter that never moved must not pass for a trained one
        raise ValueError(f"none of the {steps} training steps had 2 decodable videos: nothing was trained, "
                         "no adapter written (check the videos with `vop data check --probe`)")
    return finish(run)
