"""Datasets and loaders: records + decoder (or frame cache) + sampler + transform.

Reproducibility: every random choice of item ``i`` (its caption, its frames, its crop and flip)
comes from ``np.random.default_rng([seed, epoch, i])``, so a batch is the same whatever the number
of DataLoader workers and whichever worker loads it. Call ``set_epoch`` between epochs.

Undecodable videos are never zero-filled. With ``on_error="skip"`` an item whose video fails
comes back as a small error marker; ``collate`` drops it from the batch (listing it under
``skipped``), and ``SkippingLoader`` prints one warning line per video and a summary per pass.
A batch whose items all failed is not yielded. ``on_error="raise"`` raises the ``DecodeError``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .decode import DecodeError, count_frames, read_frames
from .sampling import sample_indices
from .transforms import clip_preprocess

__all__ = ["EpochShuffle", "SkippingLoader", "VideoDataset", "VideoTextDataset", "collate", "load_video", "make_loader"]

ON_ERROR = ("skip", "raise")


def load_video(record, frames: int, image_size: int, train: bool, rng, cache=None, augment: bool = True) -> torch.Tensor:
    """CLIP-ready float ``[F, 3, S, S]`` for one record, from the cache when it holds the video.

    ``augment=False`` keeps training's random frames but skips crop and flip (a flip turns
    "moves left" into "moves right": the demo world trains without it)."""
    if cache is not None and record.video_id in cache.failed:
        raise DecodeError(record.path or record.video_id, f"failed when cached: {cache.failed[record.video_id]}")
    if cache is not None and cache.has(record.video_id):
        stored = cache.load(record.video_id)  # [K, H, W, 3] memory-mapped
        raw = np.ascontiguousarray(stored[sample_indices(stored.shape[0], frames, train, rng)])
    else:
        if record.path is None:
            raise DecodeError(record.video_id, "video file not found")
        indices = sample_indices(count_frames(record.path), frames, train, rng)
        raw = read_frames(record.path, indices, short_side=image_size)
    return clip_preprocess(raw, size=image_size, train=train and augment, rng=rng)


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
                 on_error: str = "skip", context_length: int = 77, augment: bool = True):
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
    """Iterates a DataLoader built with ``collate``: yields only non-empty batches, prints one
    warning line per undecodable video (once per run) and a summary at the end of each pass."""

    def __init__(self, loader: DataLoader, stream=None):
        self.loader, self.stream = loader, stream
        self.skipped: dict[str, str] = {}

    @property
    def dataset(self):
        return self.loader.dataset

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        stream = self.stream or sys.stderr
        this_pass: set[str] = set()
        for batch in self.loader:
            for video_id, reason in batch["skipped"]:
                if video_id not in self.skipped:
                    print(f"warning: skipping undecodable video {video_id!r}: {reason}", file=stream)
                self.skipped[video_id] = reason
                this_pass.add(video_id)
            if not batch.get("empty"):
                yield batch
        if this_pass:
            print(f"skipped {len(this_pass)} of {len(self.dataset)} videos this pass (undecodable)", file=stream)


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
                drop_last: bool = False) -> SkippingLoader:
    """A ``SkippingLoader``; with ``shuffle`` the order depends only on ``seed`` and the epoch."""
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate,
                        sampler=EpochShuffle(dataset, seed) if shuffle else None, drop_last=drop_last,
                        worker_init_fn=_worker_init if num_workers else None)
    return SkippingLoader(loader)
