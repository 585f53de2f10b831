"""Frame sampling and CLIP transforms: pure functions with explicit RNGs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vop.data.sampling import sample_indices, segment_bounds
from vop.data.transforms import CLIP_MEAN, CLIP_STD, clip_preprocess


@pytest.mark.parametrize("num_frames", [1, 2, 3, 5, 11, 12, 13, 24, 100, 301])
@pytest.mark.parametrize("frames", [1, 4, 12])
def test_indices_valid_for_any_length(num_frames, frames):
    bounds = segment_bounds(num_frames, frames)
    test = sample_indices(num_frames, frames)
    rng = np.random.default_rng(0)
    train = [sample_indices(num_frames, frames, train=True, rng=rng) for _ in range(20)]
    for idx in [test, *train]:
        assert len(idx) == frames
        assert all(0 <= i < num_frames for i in idx)
        assert idx == sorted(idx)
        assert all(lo <= i < hi for i, (lo, hi) in zip(idx, bounds))
    if num_frames >= frames:
        assert len(set(test)) == frames  # long enough videos never repeat a frame


def test_eval_takes_segment_middles():
    assert sample_indices(12, 4) == [1, 4, 7, 10]
    assert sample_indices(120, 12) == list(range(5, 120, 10))
    assert sample_indices(3, 6) == [0, 0, 1, 1, 2, 2]  # short videos repeat frames


def test_train_sampling_is_seeded_and_varies():
    draw = lambda seed: sample_indices(300, 12, train=True, rng=np.random.default_rng(seed))
    assert draw(1) == draw(1)
    assert len({tuple(draw(s)) for s in range(10)}) > 1
    with pytest.raises(ValueError, match="explicit np.random.Generator"):
        sample_indices(300, 12, train=True)
    with pytest.raises(ValueError, match="at least one frame"):
        sample_indices(0, 12)


def test_eval_transform_shape_and_normalisation():
    frames = np.full((3, 48, 80, 3), 128, dtype=np.uint8)
    x = clip_preprocess(frames, size=32)
    assert x.shape == (3, 3, 32, 32) and x.dtype == torch.float32
    expected = (128 / 255 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    assert torch.allclose(x.mean(dim=(0, 2, 3)), expected, atol=1e-5)


def test_eval_transform_center_crops_after_short_side_resize():
    frames = np.zeros((1, 40, 120, 3), dtype=np.uint8)
    frames[:, :, 40:80] = 255  # a white band in the middle third survives the centre crop
    x = clip_preprocess(frames, size=20)
    white = (1 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    assert torch.allclose(x[0, :, 10, 10], white, atol=1e-4)
    assert torch.allclose(x[0, :, :, 2:18].mean(dim=(1, 2)), white, atol=1e-3)


def test_train_transform_same_crop_for_every_frame_and_seeded():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(1, 64, 96, 3), dtype=np.uint8)
    clip = np.repeat(img, 4, axis=0)
    a = clip_preprocess(clip, size=32, train=True, rng=np.random.default_rng(5))
    b = clip_preprocess(clip, size=32, train=True, rng=np.random.default_rng(5))
    assert torch.equal(a, b) and a.shape == (4, 3, 32, 32)
    assert all(torch.equal(a[0], a[t]) for t in range(4))  # one crop/flip per video
    outs = {clip_preprocess(clip, size=32, train=True, rng=np.random.default_rng(s)).sum().item() for s in range(8)}
    assert len(outs) > 1
    with pytest.raises(ValueError, match="explicit np.random.Generator"):
        clip_preprocess(clip, size=32, train=True)


def test_train_transform_flips_sometimes():
    frames = np.zeros((1, 32, 32, 3), dtype=np.uint8)
    frames[:, :, :16] = 255  # left half white
    left_white = []
    for seed in range(16):
        x = clip_preprocess(frames, size=32, train=True, rng=np.random.default_rng(seed))
        left_white.append(bool(x[0, 0, :, :4].mean() > x[0, 0, :, -4:].mean()))
    assert any(left_white) and not all(left_white)
