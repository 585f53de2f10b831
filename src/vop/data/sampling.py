"""Frame sampling: which frame indices of a video feed the model. Pure functions, explicit RNG.

The video is cut into ``F`` equal segments (boundaries may fall between frames). Evaluation takes
the middle frame of each segment, so the same video always gives the same frames; training takes
one uniformly random frame inside each segment, drawn from the caller's ``np.random.Generator``
so that results depend on a seed, never on global state or on the number of DataLoader workers.
A video shorter than ``F`` frames repeats frames (segments share a frame); any length >= 1 works.
"""

from __future__ import annotations

import numpy as np

__all__ = ["sample_indices", "segment_bounds"]


def segment_bounds(num_frames: int, segments: int) -> np.ndarray:
    """Integer ``[segments, 2]`` half-open frame ranges ``[lo, hi)``, each holding >= 1 frame."""
    if num_frames < 1:
        raise ValueError(f"a video needs at least one frame, got num_frames={num_frames}")
    if segments < 1:
        raise ValueError(f"segments must be >= 1, got {segments}")
    edges = np.linspace(0.0, num_frames, segments + 1)  # [F+1] real-valued boundaries
    lo = np.minimum(np.floor(edges[:-1]).astype(np.int64), num_frames - 1)
    hi = np.maximum(np.floor(edges[1:]).astype(np.int64), lo + 1)  # short videos: one frame per segment
    return np.stack([lo, hi], axis=1)


def sample_indices(
    num_frames: int, frames: int, train: bool = False, rng: np.random.Generator | None = None
) -> list[int]:
    """``frames`` indices into a video of ``num_frames`` frames, non-decreasing.

    ``train=False``: the middle of each segment. ``train=True``: a random frame per segment
    from ``rng`` (required, so that sampling is reproducible).
    """
    bounds = segment_bounds(num_frames, frames)
    if not train:
        edges = np.linspace(0.0, num_frames, frames + 1)
        mids = np.floor((edges[:-1] + edges[1:]) / 2).astype(np.int64)
        return np.clip(mids, bounds[:, 0], bounds[:, 1] - 1).tolist()
    if rng is None:
        raise ValueError("train-time sampling needs an explicit np.random.Generator (rng=...)")
    return rng.integers(bounds[:, 0], bounds[:, 1]).tolist()
