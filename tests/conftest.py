"""Shared test fixtures: the real third-party files in tests/data, a tiny random CLIP,
and a writer for short synthetic videos (PyAV, libx264 inside the wheel).

``VOP_SHARED_DATA=/path/to/full/copy`` adds test_full_data.py (the full annotation files and three
more videos that tests/data leaves out); without it that file is not collected, so nothing skips."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
FULL_DATA = os.environ.get("VOP_SHARED_DATA")
collect_ignore = [] if FULL_DATA else ["test_full_data.py"]


@pytest.fixture(scope="session")
def real_data() -> Path:
    """tests/data: small real third-party files (sources and licences in tests/data/README.md)."""
    return DATA


@pytest.fixture()
def tiny_clip():
    """A tiny random-weight CLIP (config 'tiny', 32 px images), reproducible."""
    from vop.backbone.clip import build_clip

    return build_clip("tiny", seed=0)


def write_video(path, frames: np.ndarray, fps: int = 10, codec: str = "libx264") -> Path:
    """Encode ``frames`` (uint8 ``[T, H, W, 3]``, H and W even) as a real video file."""
    from vop_demo.world import write_video as encode

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    encode(path, frames, fps, codec=codec, pix_fmt="yuv420p")
    return path


def color_video(num_frames: int = 16, size: int = 64, seed: int = 0) -> np.ndarray:
    """Frames whose mean colour changes over time (each frame distinguishable), ``[T, H, W, 3]``."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=3)
    t = np.arange(num_frames)[:, None]
    colors = (base[None, :] + t * 255 // max(num_frames, 1)) % 256  # [T, 3]
    frames = np.broadcast_to(colors[:, None, None, :], (num_frames, size, size, 3)).astype(np.uint8)
    return frames.copy()


@pytest.fixture()
def make_video(tmp_path):
    """``make_video(name, num_frames=16, size=64, seed=0, fps=10) -> Path`` in a temp folder."""

    def _make(name: str = "clip.mp4", num_frames: int = 16, size: int = 64, seed: int = 0, fps: int = 10):
        return write_video(tmp_path / name, color_video(num_frames, size, seed), fps=fps)

    return _make


@pytest.fixture()
def tiny_retrieval_project(tmp_path):
    """A tiny train/val/test project for ``vop train`` / ``vop eval``: a saved random tiny CLIP
    (``tiny.safetensors``), 12 short generated videos, a generic ``ann.csv`` with a ``split``
    column (8 train, 2 val, 2 test; two captions each). Returns the folder."""
    from vop.backbone.clip import build_clip
    from vop.backbone.loading import save_clip

    save_clip(build_clip("tiny", seed=0), tmp_path / "tiny.safetensors")
    rows = ["video,caption,split"]
    for i in range(12):
        write_video(tmp_path / "videos" / f"v{i}.mp4", color_video(8, 32, seed=i))
        split = "train" if i < 8 else ("val" if i < 10 else "test")
        rows += [f"v{i}.mp4,a video number {i},{split}", f"v{i}.mp4,clip {i} in changing colours,{split}"]
    (tmp_path / "ann.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


@contextmanager
def running_server(app, header_timeout: float = 10.0):
    """A real uvicorn server for ``app`` on 127.0.0.1 (a free port), configured as ``vop serve``
    configures it (``vop.serve.server.server_config``); yields the port."""
    import threading
    import time

    import uvicorn

    from vop.serve.server import server_config

    server = uvicorn.Server(server_config(app, "127.0.0.1", 0, header_timeout=header_timeout, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(400):
            if server.started:
                break
            time.sleep(0.025)
        assert server.started
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=10)
