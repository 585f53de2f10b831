"""int8 calibration data: frames of the user's own videos, never a test split.

``vop index`` calibrates on the first N videos of the collection it indexes (in the index's own
order), ``vop eval`` on the validation split of the dataset it evaluates. The frames are read
lazily, only when the calibrated graph is not in the cache yet; :attr:`Calibration.id` (the files'
paths, sizes and modification times) is part of the cache key, so other videos calibrate anew.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

DEFAULT_VIDEOS = 8  # videos read for int8 calibration (each one batch [1, F, 3, S, S])


@dataclass
class Calibration:
    """What an int8 graph is calibrated on: ``load()`` -> a list of ``[F, 3, S, S]`` videos."""

    id: str  # identity of the data (cache key)
    videos: int  # how many videos it holds (recorded in the manifest)
    source: str  # one line for people: which videos
    load: Callable[[], list[torch.Tensor]]

    def describe(self) -> dict:
        return {"videos": self.videos, "source": self.source}


def files_id(paths: Sequence[str | Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        st = Path(p).stat()
        h.update(f"{Path(p).resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def from_files(paths: Sequence[str | Path], frames: int, image_size: int, cache=None,
               what: str = "videos") -> Calibration:
    """Calibration on the video files ``paths`` through vop's one video path (``vop.data``)."""
    from vop.data.annotations import VideoRecord

    return _from_records([VideoRecord(str(p), Path(p), [], "") for p in paths], frames, image_size, cache, what)


def _from_records(records, frames: int, image_size: int, cache, what: str) -> Calibration:
    """A video that cannot be decoded is left out; none at all is an error when the data is loaded."""
    if not records:
        raise ValueError(f"int8 calibration needs at least one video; {what} has none")

    def load() -> list[torch.Tensor]:
        from vop.data.dataset import load_video
        from vop.data.decode import DecodeError

        out = []
        for r in records:
            try:
                out.append(load_video(r, frames, image_size, train=False, rng=None, cache=cache))  # [F, 3, S, S]
            except DecodeError:
                continue
        if not out:
            raise ValueError(f"int8 calibration: none of the {len(records)} {what} could be decoded")
        return out

    n = len(records)
    return Calibration(files_id([r.path for r in records]), n, f"first {n} {what}", load)


def from_collection(video_dir: str | Path, frames: int, image_size: int, count: int = DEFAULT_VIDEOS,
                    cache=None) -> Calibration:
    """The first ``count`` videos of the collection ``vop index`` indexes (its discovery order)."""
    from vop.index.discover import open_collection

    collection = open_collection(video_dir)
    if collection.local is None:
        raise ValueError(f"--runtime openvino --precision int8 calibrates on local videos; {video_dir} is not "
                         "a local folder (index with --precision fp32 or bf16, or copy a few videos here)")
    files = collection.files[:count]
    return from_files([collection.local / f.relpath for f in files], frames, image_size, cache,
                      f"videos of {collection.local}")


def from_records(records, frames: int, image_size: int, count: int = DEFAULT_VIDEOS, cache=None,
                 split: str = "validation") -> Calibration:
    """The first ``count`` videos of dataset ``records`` (``vop eval``: the validation split)."""
    records = [r for r in records if r.path is not None][:count]
    return _from_records(records, frames, image_size, cache, f"videos of the {split} split")
