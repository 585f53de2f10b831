"""Video decoding behind one interface: ``read_frames(path, indices)`` and ``probe(path)``.

Backend: PyAV (FFmpeg), imported lazily. Decisions, each checked on the real files in
``../shared/data/videos`` by ``tests/test_data_decode.py``:

* **Frame index = position in the decoder's output order.** The decoder already reorders
  B-frames into presentation order (``unordered.mov``, whose packets carry PTS 0,3,1,2, comes out
  0,1,2,3). We deliberately do *not* re-sort by PTS: AVI files with packed B-frames
  (``test.avi``, XviD) carry packet-order timestamps, and sorting by them swaps 54 pairs of
  frames into a visibly wrong order. On variable-frame-rate files an index is therefore a frame,
  not a time: uniform indices are uniform in frames, as in CLIP4Clip / X-Pool.
* **Frame count**: ``stream.frames`` from the header when it is set; otherwise (Matroska, WebM,
  files without a duration) the non-empty video packets are counted by demuxing, which reads
  the file but decodes nothing. One packet is one frame for every codec in the test set.
* **Rotation**: the display-matrix side data (``frame.rotation``, degrees counter-clockwise)
  is applied, so frames come out the way a player shows them.
* **Errors**: anything that prevents returning exactly the asked frames (a missing file, no
  video stream, a decoder error, fewer decodable frames than an asked index) raises
  ``DecodeError(path, reason)``. Nothing is ever zero-filled.
* **Speed**: one pass through the stream with FFmpeg's own threads, RGB conversion only for
  wanted frames, and a stop right after the last wanted index. ``short_side`` resizes inside
  the RGB conversion (libswscale, area filter) so a large video never materialises at full size.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .paths import not_a_file

__all__ = ["DecodeError", "VideoInfo", "count_frames", "probe", "read_all_frames", "read_frames"]


class DecodeError(RuntimeError):
    """A video could not be decoded as asked; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot decode {self.path}: {reason}")

    def __reduce__(self):  # keep (path, reason) when the error crosses a DataLoader worker
        return (DecodeError, (self.path, self.reason))


@dataclass(frozen=True)
class VideoInfo:
    """What ``probe`` learns from the headers (and one decoded frame, for the rotation).
    ``width``/``height`` are display sizes (after rotation); ``duration`` is in seconds and
    ``None`` when the container has none."""

    num_frames: int
    fps: float
    duration: float | None
    width: int
    height: int
    rotation: int
    warning: str | None = None  # e.g. "truncated: 18 of ~100 frames" (the header promised more)


TRUNCATED_FRACTION = 0.8  # fewer frames than this share of duration x fps: the file is cut short


def truncation_warning(found: int, duration: float | None, fps: float) -> str | None:
    """``"truncated: F of E frames"`` when ``found`` is far below what the header's duration
    and frame rate promise (a file cut short), else None."""
    if not duration or not fps or duration <= 0 or fps <= 0:
        return None
    expected = round(duration * fps)
    if found < TRUNCATED_FRACTION * expected and expected - found >= 2:
        return f"truncated: {found} of ~{expected} frames"  # expected: header duration x frame rate
    return None


def _import_av():
    try:
        import av
    except ImportError as err:  # pragma: no cover - av is a core dependency
        raise ImportError("video decoding needs PyAV: pip install 'av==18.1.0'") from err
    return av


def _open(path):
    """Open ``path`` and return (container, video stream) or raise DecodeError."""
    av = _import_av()
    path = Path(path)
    if not path.is_file():
        raise DecodeError(path, not_a_file(path))
    try:
        container = av.open(str(path))
    except Exception as err:  # FFmpeg raises a zoo of OSError/ValueError subclasses
        raise DecodeError(path, f"cannot open container ({type(err).__name__}: {err})") from err
    if not container.streams.video:
        container.close()
        raise DecodeError(path, "no video stream")
    return container, container.streams.video[0]


def _stream_rotation(container, stream) -> int:
    """Display rotation in degrees counter-clockwise, read from the first decoded frame
    (PyAV exposes the display matrix only on frames)."""
    av = _import_av()
    try:
        for frame in container.decode(stream):
            return round(frame.rotation or 0)
    except (av.FFmpegError, OSError, ValueError):  # no decodable first frame: read_frames will say why
        return 0
    return 0


def probe(path: str | os.PathLike) -> VideoInfo:
    """Frame count, fps, duration, display size and rotation of the first video stream."""
    container, stream = _open(path)
    try:
        ctx = stream.codec_context
        fps = float(stream.average_rate or stream.guessed_rate or 0.0)
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000  # AV_TIME_BASE is microseconds
        num_frames = int(stream.frames or 0)
        counted = num_frames <= 0
        if counted:
            num_frames = _count_packets(container, stream, path)
            container.close()  # reopen rather than seek: a cut file may refuse to seek back
            container, stream = _open(path)
        rotation = _stream_rotation(container, stream)
    finally:
        container.close()
    if num_frames <= 0:
        raise DecodeError(path, "video stream has no frames")
    width, height = int(ctx.width), int(ctx.height)
    if rotation % 180 != 0:
        width, height = height, width
    warning = truncation_warning(num_frames, duration, fps) if counted else None
    return VideoInfo(num_frames, fps, duration, width, height, rotation, warning)


def count_frames(path: str | os.PathLike) -> int:
    """Number of frames, from the header or by counting packets; decodes nothing (cheaper than ``probe``)."""
    container, stream = _open(path)
    try:
        num_frames = int(stream.frames or 0) or _count_packets(container, stream, path)
    finally:
        container.close()
    if num_frames <= 0:
        raise DecodeError(path, "video stream has no frames")
    return num_frames


def _count_packets(container, stream, path) -> int:
    """Count non-empty video packets (one per frame); demuxing only, no decoding."""
    try:
        return sum(1 for packet in container.demux(stream) if packet.size > 0)
    except Exception as err:
        raise DecodeError(path, f"demuxing failed while counting frames ({type(err).__name__}: {err})") from err


def _target_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    """Output (width, height) with the short side scaled to ``short_side`` (never upscaled)."""
    if short_side is None or min(width, height) <= short_side:
        return width, height
    scale = short_side / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _to_rgb(frame, short_side: int | None) -> np.ndarray:
    """RGB uint8 [H, W, 3] in display orientation, optionally downscaled in libswscale."""
    width, height = _target_size(frame.width, frame.height, short_side)
    if (width, height) == (frame.width, frame.height):
        img = frame.to_ndarray(format="rgb24")
    else:
        img = frame.to_ndarray(format="rgb24", width=width, height=height, interpolation="AREA")
    quarter_turns = round((frame.rotation or 0) / 90) % 4
    if quarter_turns:
        img = np.rot90(img, k=quarter_turns)  # rot90 turns counter-clockwise, like the matrix
    return np.ascontiguousarray(img)


def read_frames(
    path: str | os.PathLike,
    indices: Sequence[int],
    short_side: int | None = None,
    threads: bool = True,
) -> np.ndarray:
    """Decode the frames at ``indices`` (any order, repeats allowed) in one pass.

    Returns uint8 ``[len(indices), H, W, 3]`` in display orientation. ``short_side`` downsizes
    frames whose short side is larger (the model resizes them anyway).
    """
    wanted = [int(i) for i in indices]
    if not wanted:
        raise ValueError("read_frames needs at least one index")
    if min(wanted) < 0:
        raise DecodeError(path, f"negative frame index {min(wanted)}")
    unique = sorted(set(wanted))
    decoded = _decode_wanted(path, unique, short_side, threads)
    return np.stack([decoded[i] for i in wanted])


def _decode_wanted(path, unique: list[int], short_side: int | None, threads: bool) -> dict[int, np.ndarray]:
    """Walk the stream once, converting only the frames in ``unique`` (sorted), and stop early."""
    container, stream = _open(path)
    if threads:
        stream.thread_type = "AUTO"  # FFmpeg frame+slice threads; a large win on H.264
    out: dict[int, np.ndarray] = {}
    position, cursor = -1, 0  # cursor: next entry of `unique` still to find
    try:
        for position, frame in enumerate(container.decode(stream)):
            if position == unique[cursor]:
                out[position] = _to_rgb(frame, short_side)
                cursor += 1
                if cursor == len(unique):
                    break
    except Exception as err:
        raise DecodeError(
            path, f"decoding failed after {position + 1} frames ({type(err).__name__}: {err})"
        ) from err
    finally:
        container.close()
    if cursor < len(unique):
        err = DecodeError(path, f"asked for frame {unique[-1]} but only {position + 1} frames decode")
        err.decodable = position + 1  # the caller may sample again within these
        raise err
    return out


def read_all_frames(path: str | os.PathLike, short_side: int | None = None) -> np.ndarray:
    """Every frame of the video, uint8 ``[T, H, W, 3]`` (used to count frames exactly)."""
    container, stream = _open(path)
    stream.thread_type = "AUTO"
    frames: list[np.ndarray] = []
    try:
        for frame in container.decode(stream):
            frames.append(_to_rgb(frame, short_side))
    except Exception as err:
        raise DecodeError(path, f"decoding failed after {len(frames)} frames ({type(err).__name__}: {err})") from err
    finally:
        container.close()
    if not frames:
        raise DecodeError(path, "no frame decodes")
    return np.stack(frames)
