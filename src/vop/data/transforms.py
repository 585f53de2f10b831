"""CLIP image preprocessing on tensors (no torchvision, no PIL).

Evaluation: resize the short side to ``size`` (bicubic with antialiasing, as PIL's bicubic
downscaling in OpenAI's preprocessing), centre crop ``size x size``, scale to [0, 1], normalise
with CLIP's mean/std. Training: one random resized crop (area 50-100%, aspect 3/4-4/3) and a
horizontal flip with probability 1/2, drawn once per video from the caller's RNG and applied to
every frame alike, so motion inside the clip is not scrambled by per-frame jitter.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["CLIP_MEAN", "CLIP_STD", "center_crop", "clip_preprocess", "resize_short_side"]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CROP_SCALE = (0.5, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)


def _as_float_nchw(frames) -> torch.Tensor:
    """uint8 ``[T, H, W, 3]`` (numpy or tensor) -> float ``[T, 3, H, W]`` in 0..255."""
    x = torch.as_tensor(np.asarray(frames)) if not torch.is_tensor(frames) else frames
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected frames shaped [T, H, W, 3], got {tuple(x.shape)}")
    return x.permute(0, 3, 1, 2).float()  # [T, H, W, 3] -> [T, 3, H, W]


def _resize(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    if x.shape[-2:] == (height, width):
        return x
    x = F.interpolate(x, size=(height, width), mode="bicubic", align_corners=False, antialias=True)
    return x.clamp_(0.0, 255.0)  # bicubic overshoots; pixels stay pixels


def resize_short_side(x: torch.Tensor, size: int) -> torch.Tensor:
    """``[T, 3, H, W]`` -> short side ``size``; the long side is truncated like CLIP's Resize."""
    h, w = x.shape[-2:]
    if h <= w:
        return _resize(x, size, int(size * w / h))
    return _resize(x, int(size * h / w), size)


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    top, left = round((h - size) / 2.0), round((w - size) / 2.0)
    return x[..., top : top + size, left : left + size]


def _random_crop_box(h: int, w: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a random resized crop; centre square if 10 draws miss."""
    area = h * w
    for _ in range(10):
        target = area * rng.uniform(*CROP_SCALE)
        aspect = math.exp(rng.uniform(math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])))
        cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
    side = min(h, w)
    return (h - side) // 2, (w - side) // 2, side, side


def _normalise(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(CLIP_MEAN, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=x.dtype).view(1, 3, 1, 1)
    return (x / 255.0 - mean) / std


def clip_preprocess(frames, size: int, train: bool = False, rng: np.random.Generator | None = None) -> torch.Tensor:
    """uint8 ``[T, H, W, 3]`` -> CLIP-normalised float ``[T, 3, size, size]``."""
    x = _as_float_nchw(frames)
    if not train:
        return _normalise(center_crop(resize_short_side(x, size), size)).contiguous()
    if rng is None:
        raise ValueError("train-time augmentation needs an explicit np.random.Generator (rng=...)")
    top, left, ch, cw = _random_crop_box(x.shape[-2], x.shape[-1], rng)
    x = _resize(x[..., top : top + ch, left : left + cw], size, size)
    if rng.random() < 0.5:
        x = x.flip(-1)
    return _normalise(x).contiguous()
