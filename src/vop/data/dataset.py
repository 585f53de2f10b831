"""One video-to-tensor path and one loader factory, used by training, evaluation and ``vop index``.

``read_video`` picks a record's frames (from the frame cache when it holds the video, else by
decoding the file at the model's image size) and ``model_input`` turns them into the CLIP input;
``load_video`` is the two together. ``make_loader`` wraps a dataset in the one DataLoader set-up
(collate, skipping, worker threads) that training and evaluation share. ``vop index`` calls
``read_video`` + ``model_input`` directly (it keeps the frames for thumbnails), so a video gives
the same vector in ``vop eval`` and in ``vop index``.

Reproducibility: every random choice of item ``i`` (its caption, its frames, its crop and flip)
comes from ``np.random.default_rng([seed, epoch, i])``, so a batch is the same whatever the number
of DataLoader workers and whichever worker loads it. Call ``set_epoch`` between epochs.

Undecodable videos are never zero-filled. With ``on_error="skip"`` an item whose video fails
comes back as a small error marker; ``collate`` drops it from the batch (listing it under
``skipped``), and ``SkippingLoader`` reports one warning line per video and a summary per pass.
``on_error="raise"`` raises the ``DecodeError``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from vop.backbone.tokenizer import CONTEXT_LENGTH

from .decode import DecodeError, count_frames, read_frames
from .sampling import sample_indices
from .transforms import clip_preprocess

__all__ = ["EpochShuffle", "SkippingLoader", "VideoDataset", "VideoTextDataset", "collate", "load_video",
           "make_loader", "model_input", "read_video"]

ON_ERROR = ("skip", "raise")


def read_video(record, frames: int, image_size: int, train: bool = False, rng=None, cache=None,
               num_frames: int | None = None) -> np.ndarray:
    """The ``frames`` frames the model sees of one record: uint8 ``[F, H, W, 3]``.

    From ``cache`` (a :class:`~vop.data.cache.FrameCache`) when it holds ``record.video_id``: F of
    its K frames. Otherwise decoded from ``record.path`` with the short side at most
    ``image_size`` (the model resizes to it anyway); ``num_frames`` is the file's frame count
    when the caller already knows it (else it is counted). Evaluation (``train=False``) takes
    the middle frame of F equal segments. Raises ``DecodeError``.
    """
    if cache is not None and record.video_id in cache.failed:
        raise DecodeError(record.path or record.video_id, f"failed when cached: {cache.failed[record.video_id]}")
    if cache is not None and cache.has(record.video_id):
        stored = cache.load(record.video_id)  # [K, H, W, 3] memory-mapped
        return np.ascontiguousarray(stored[sample_indices(stored.shape[0], frames, train, rng)])
    if record.path is None:
        raise DecodeError(record.video_id, "video file not found")
    total = num_frames if num_frames is not None else count_frames(record.path)
    return read_frames(record.path, sample_indices(total, frames, train, rng), short_side=image_size)


def model_input(raw: np.ndarray, image_size: int, train: bool = False, rng=None) -> torch.Tensor:
    """uint8 ``[F, H, W, 3]`` -> CLIP-normalised float ``[F, 3, S, S]`` (train: random crop + flip)."""
    return clip_preprocess(raw, size=image_size, train=train, rng=rng)


def load_video(record, frames: int, image_size: int, train: bool, rng, cache=None, augment: bool = True) -> torch.Tensor:
    """CLIP-ready float ``[F, 3, S, S]`` for one record: ``model_input(read_video(...))``.

    ``augment=False`` keeps training's random frames but skips crop and flip (a flip turns
    "moves left" into "moves right": the demo world trains without it)."""
    raw = read_video(record, frames, image_size, train, rng, cache)
    return model_input(raw, image_size, train=train and augment, rng=rng)


class _Base(Dataset):
    def __init__(self, records, frames: int, image_size: int, train: bool, seed: int, cache, on_error: str):
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        if isinstance(cache, (str, Path)):
            from .cache import FrameCache

            cache = FrameCache(cache)
        self.records, self.frames, self.image_size = list(records), frames, image_size
        self.train, self.seed, self.cache, self.on_error = train, seed, cache, on_error
        self.augment = True  # train-time crop + flip; VideoTextDataset(augment=False) turns them off
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.records)

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index])

    def _video(self, index: int, rng):
        """The video tensor, or an error marker dict when skipping."""
        record = self.records[index]
        try:
            return load_video(record, self.frames, self.image_size, self.train, rng, self.cache,
                              self.augment)
        except DecodeError as err:
            if self.on_error == "raise":
                raise
            return {"error": str(err), "video_id": record.video_id, "video_index": index}


class VideoTextDataset(_Base):
    """One item per video: ``dict(video=[F,3,S,S], tokens=[L], text=str, video_index=int)``.

    Training draws the caption (and frames, crop, flip) from the item's RNG; evaluation uses the
    first caption, middle frames and a centre crop.
    """

    def __init__(self, records, frames: int, image_size: int, train: bool, seed: int = 0, cache=None,
                 on_error: str = "skip", context_length: int = CONTEXT_LENGTH, augment: bool = True):
        super().__init__(records, frames, image_size, train, seed, cache, on_error)
        self.context_length, self.augment = context_length, augment

    def __getitem__(self, index: int) -> dict:
        from vop.backbone.tokenizer import tokenize

        rng = self._rng(index)
        captions = self.records[index].captions
        text = captions[int(rng.integers(len(captions)))] if self.train else captions[0]
        video = self._video(index, rng)
        if isinstance(video, dict):
            return video
        tokens = tokenize([text], context_length=self.context_length)[0]
        return {"video": video, "tokens": tokens, "text": text, "video_index": index}


class VideoDataset(_Base):
    """Videos only, for encoding a gallery: ``dict(video=[F,3,S,S], video_index=int)``."""

    def __init__(self, records, frames: int, image_size: int, cache=None, on_error: str = "skip"):
        super().__init__(records, frames, image_size, False, 0, cache, on_error)

    def __getitem__(self, index: int) -> dict:
        video = self._video(index, self._rng(index))
        return video if isinstance(video, dict) else {"video": video, "video_index": index}


def collate(items: list[dict]) -> dict | None:
    """Stack good items: ``video`` [B,F,3,S,S], ``tokens`` [B,L], ``video_index`` [B], ``text`` list;
    failed items go to ``skipped`` as (video_id, reason). ``empty`` is set when nothing decoded."""
    good = [it for it in items if "error" not in it]
    skipped = [(it["video_id"], it["error"]) for it in items if "error" in it]
    if not good:
        return {"skipped": skipped, "empty": True}
    batch = {"video": torch.stack([it["video"] for it in good]),
             "video_index": torch.tensor([it["video_index"] for it in good], dtype=torch.long),
             "skipped": skipped}
    if "tokens" in good[0]:
        batch["tokens"] = torch.stack([it["tokens"] for it in good])
        batch["text"] = [it["text"] for it in good]
    return batch


class SkippingLoader:
    """Iterates a DataLoader built with ``collate``: reports one warning line per undecodable
    video (once per run) and a summary at the end of each pass, and yields the non-empty batches
    (every batch with ``keep_empty``: DDP ranks must step together).

    ``report(line)`` receives the lines (default: printed to ``stream``, else stderr)."""

    def __init__(self, loader: DataLoader, stream=None, report: Callable[[str], None] | None = None,
                 keep_empty: bool = False):
        self.loader, self.stream, self.keep_empty = loader, stream, keep_empty
        self.report = report or self._print
        self.skipped: dict[str, str] = {}

    def _print(self, line: str) -> None:
        from vop.cli.messages import shown  # names and reasons come from files: escaped

        print(shown(line), file=self.stream or sys.stderr)

    @property
    def dataset(self):
        return self.loader.dataset

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        this_pass: set[str] = set()
        for batch in self.loader:
            for video_id, reason in batch["skipped"]:
                if video_id not in self.skipped:
                    self.report(f"warning: skipping undecodable video {video_id!r}: {reason}")
                self.skipped[video_id] = reason
                this_pass.add(video_id)
            if self.keep_empty or not batch.get("empty"):
                yield batch
        if this_pass:
            self.report(f"skipped {len(this_pass)} of {len(self.dataset)} videos this pass (undecodable)")


def _worker_init(worker_id: int) -> None:
    torch.set_num_threads(1)  # workers decode in parallel; one BLAS thread each avoids oversubscription


class EpochShuffle(Sampler):
    """A permutation that depends only on (seed, the dataset's epoch): a resumed run sees the
    same order as an uninterrupted one, unlike a sampler drawing from a running generator."""

    def __init__(self, dataset, seed: int = 0):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.dataset.epoch])
        return iter(rng.permutation(len(self.dataset)).tolist())


def make_loader(dataset, batch_size: int, shuffle: bool = False, num_workers: int = 0, seed: int = 0,
                drop_last: bool = False, sampler: Sampler | None = None, keep_empty: bool = False,
                report: Callable[[str], None] | None = None) -> SkippingLoader:
    """The loader of training and evaluation: a ``SkippingLoader`` over ``dataset``.

    With ``shuffle`` the order depends only on ``seed`` and the epoch; ``sampler`` gives the order
    instead (training's sharded sampler). ``keep_empty`` and ``report``: see ``SkippingLoader``.
    """
    if sampler is None and shuffle:
        sampler = EpochShuffle(dataset, seed)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate,
                        sampler=sampler, drop_last=drop_last,
                        worker_init_fn=_worker_init if num_workers else None)
    return SkippingLoader(loader, report=report, keep_empty=keep_empty)
