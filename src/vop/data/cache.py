"""Frame cache: decode every video once, then let every epoch read pixels instead of video.

Layout of a cache folder::

    cache.json              settings: format version, frames per video, short side
    videos.json             {"videos": {video_id: {"file", "frames", "source_frames", "source"}},
                             "failed": {video_id: reason}}   (named manifest.json before; still read)
                            source: {"path" (absolute), "size", "mtime_ns"} of the video file
    videos/<key>.npy        uint8 [K, H, W, 3], K = min(frames, video length), short side = size

Each video keeps ``frames`` (default 32) frames taken at the middles of equal segments, resized
so that the short side is the model's image size: enough for training to draw a random frame
per segment for F = 12 (one 224 x 398 frame is 0.27 MB), and a reader memory-maps just the
frames it needs. Writes are atomic (temporary file + ``os.replace``), so a
killed ``vop prepare`` loses at most the video it was decoding; a re-run skips every finished
file. ``videos.json`` is rewritten (atomically) every few videos and at the end; the files
themselves are the source of truth for what is done. (An index folder's ``manifest.json`` is a
different file; the cache's list was renamed so that the name means one thing.)

``vop index --cache`` finds a video by its file (:meth:`FrameCache.id_for_file`): the recorded
path, size and modification time must all match, so an edited video is decoded again. Caches
built before the file was recorded gain it by re-running ``vop prepare`` (nothing is decoded
again; it assumes the files were not edited since).

Training from the cache samples F of the K cached frames with the same segment rule as from
video, so the random jitter inside a segment is coarser (K positions instead of every frame).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .decode import DecodeError, count_frames, read_frames
from .sampling import sample_indices

__all__ = ["CACHE_VERSION", "CacheError", "CacheWriteError", "FrameCache", "build_cache", "cache_key"]

CACHE_VERSION = 1
MAX_INT64 = 2**63 - 1
CONTENTS_FILE = "videos.json"           # what is cached and what failed
LEGACY_CONTENTS_FILE = "manifest.json"  # its name in caches built before; read, then replaced
CONTENTS_EVERY = 25  # videos between rewrites of videos.json


def cache_key(video_id: str) -> str:
    """A file-system-safe, collision-free file stem for ``video_id`` (ids may hold slashes)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", video_id)[:80]
    return f"{safe}-{hashlib.sha1(video_id.encode('utf-8')).hexdigest()[:10]}"


class CacheError(ValueError):
    """A cache file that is not what ``vop prepare`` writes (bad JSON, wrong types, absurd
    numbers, unreadable frames); the message names the file."""


class CacheWriteError(OSError):
    """The cache folder cannot be written (not a folder, no permission, disk full); the message
    names the folder and says that what was cached before is kept."""


def _write_atomic(path: Path, write) -> None:
    """``write(file)`` into a temporary file, then rename it to ``path``; on any failure (a full
    disk, an interrupt) the temporary file is removed, so nothing half-written is left behind."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def _write_json_atomic(path: Path, data) -> None:
    _write_atomic(path, lambda f: f.write(json.dumps(data, indent=1, sort_keys=True).encode("utf-8")))


def _write_npy_atomic(path: Path, array: np.ndarray) -> None:
    # through a buffer: numpy writes a real file with tofile(), whose short write on a full disk
    # is an OSError without errno; a plain write() says ENOSPC
    buffer = io.BytesIO()
    np.save(buffer, array)
    _write_atomic(path, lambda f: f.write(buffer.getbuffer()))


def _read_json(path: Path) -> dict:
    """A cache JSON file as a dict; not JSON, not an object, nested too deeply or holding a
    number too long to parse is a ``CacheError`` naming the file."""
    from vop.limits import read_json_object

    try:
        return read_json_object(path, CacheError)
    except CacheError:
        raise
    except ValueError as err:  # e.g. an integer of more than 4300 digits
        raise CacheError(f"{path}: not valid JSON ({str(err)[:120]})") from None


def _check_settings(path: Path, data: dict) -> dict:
    """``cache.json``: version, frames (1..MAX_FRAMES) and short side (1..MAX_IMAGE_SIZE)."""
    from vop.limits import MAX_FRAMES, MAX_IMAGE_SIZE, check_int

    if data.get("version") != CACHE_VERSION:
        raise CacheError(f"{path}: cache version {str(data.get('version'))[:20]} is not {CACHE_VERSION}; "
                         "rebuild it with `vop prepare`")
    check_int(data.get("frames"), 1, MAX_FRAMES, f"{path}: frames", CacheError)
    check_int(data.get("short_side"), 1, MAX_IMAGE_SIZE, f"{path}: short_side", CacheError)
    return data


def _check_contents(path: Path, data: dict) -> dict:
    """``videos.json``: ``videos`` an object of entry objects with bounded numbers and string
    paths, ``failed`` an object of reason strings. Anything else is a ``CacheError``."""
    from vop.limits import MAX_FRAMES, check_int, check_str

    videos, failed = data.get("videos", {}), data.get("failed", {})
    if not isinstance(videos, dict) or not isinstance(failed, dict):
        raise CacheError(f"{path}: 'videos' and 'failed' must be JSON objects")
    for video_id, reason in failed.items():
        check_str(reason, f"{path}: failed[{video_id[:40]!r}]", CacheError)
    for video_id, entry in videos.items():
        where = f"{path}: videos[{video_id[:40]!r}]"
        if not isinstance(entry, dict):
            raise CacheError(f"{where} must be a JSON object")
        check_str(entry.get("file"), f"{where}.file", CacheError, optional=True)
        if "frames" in entry:
            check_int(entry["frames"], 1, MAX_FRAMES, f"{where}.frames", CacheError)
        if "source_frames" in entry:
            check_int(entry["source_frames"], 0, MAX_INT64, f"{where}.source_frames", CacheError)
        source = entry.get("source")
        if source is not None:
            if not isinstance(source, dict):
                raise CacheError(f"{where}.source must be a JSON object")
            check_str(source.get("path"), f"{where}.source.path", CacheError)
            check_int(source.get("size"), 0, MAX_INT64, f"{where}.source.size", CacheError)
            check_int(source.get("mtime_ns"), -MAX_INT64, MAX_INT64, f"{where}.source.mtime_ns", CacheError)
    return {"videos": videos, "failed": failed}


def _check_frames(path: Path, frames) -> np.ndarray:
    """A cached ``.npy`` must hold uint8 ``[K, H, W, 3]`` with sane sizes; else ``DecodeError``
    (so ``vop index`` / training make it one error row or skipped video, not a stopped run)."""
    from vop.limits import MAX_FRAMES, MAX_IMAGE_SIZE

    shape = tuple(frames.shape)
    if (frames.dtype != np.uint8 or len(shape) != 4 or shape[3] != 3 or not 1 <= shape[0] <= MAX_FRAMES
            or not all(1 <= s <= 8 * MAX_IMAGE_SIZE for s in shape[1:3])):
        raise DecodeError(path, f"cached frames are {frames.dtype} {list(shape)[:6]}, not uint8 [K, H, W, 3]; "
                                "rebuild the cache with `vop prepare`")
    return frames


class FrameCache:
    """Read access to a cache folder built by ``build_cache`` / ``vop prepare``."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        settings_path = self.root / "cache.json"
        if not settings_path.is_file():
            raise FileNotFoundError(f"{self.root} is not a frame cache (no cache.json); build one with `vop prepare`")
        self.settings = _check_settings(settings_path, _read_json(settings_path))
        contents = _read_contents(self.root)
        self.failed: dict[str, str] = contents.get("failed", {})
        self._by_file: dict[str, tuple[str, int, int]] = {}  # path -> (video_id, size, mtime_ns)
        for video_id, entry in contents.get("videos", {}).items():
            src = entry.get("source") if isinstance(entry, dict) else None
            if isinstance(src, dict) and {"path", "size", "mtime_ns"} <= set(src):
                self._by_file[str(src["path"])] = (video_id, src["size"], src["mtime_ns"])

    def id_for_file(self, path: str | os.PathLike) -> str | None:
        """The video id cached from this file, when path, size and mtime still match; else None."""
        path = Path(path).resolve()
        found = self._by_file.get(str(path))
        if found is None or not self.has(found[0]):
            return None
        try:
            st = path.stat()
        except OSError:
            return None
        return found[0] if (st.st_size, st.st_mtime_ns) == found[1:] else None

    @property
    def frames(self) -> int:
        return int(self.settings["frames"])

    @property
    def short_side(self) -> int:
        return int(self.settings["short_side"])

    def path_for(self, video_id: str) -> Path:
        return self.root / "videos" / f"{cache_key(video_id)}.npy"

    def has(self, video_id: str) -> bool:
        return self.path_for(video_id).is_file()

    def load(self, video_id: str) -> np.ndarray:
        """The cached frames, memory-mapped: uint8 ``[K, H, W, 3]``; index it to read pixels."""
        path = self.path_for(video_id)
        if not path.is_file():
            raise KeyError(f"video {video_id!r} is not in the cache at {self.root}")
        try:
            frames = np.load(path, mmap_mode="r")  # never allow_pickle: an object array is refused
        except (ValueError, OSError, EOFError) as err:
            # numpy's own message about pickled data advises loading it unsafely: never pass that on
            pickled = "pickle" in str(err) or "Python objects" in str(err)
            reason = "holds pickled Python objects" if pickled else f"{type(err).__name__}: {str(err)[:100]}"
            raise DecodeError(path, f"cached frames unreadable ({reason}); rebuild the cache with `vop prepare`") from None
        return _check_frames(path, frames)

    def read(self, video_id: str, indices: Iterable[int]) -> np.ndarray:
        """uint8 ``[len(indices), H, W, 3]`` from the cached frames (indices into the K cached)."""
        return np.ascontiguousarray(self.load(video_id)[list(indices)])


def _read_contents(root: Path) -> dict:
    """``videos.json``, or ``manifest.json`` in a cache built before the rename; {} when neither."""
    for name in (CONTENTS_FILE, LEGACY_CONTENTS_FILE):
        path = root / name
        if path.is_file():
            return _check_contents(path, _read_json(path))
    return {}


def source_of(path) -> dict | None:
    """``{"path", "size", "mtime_ns"}`` of a video file (what ``FrameCache.id_for_file`` matches)."""
    try:
        resolved = Path(path).resolve()
        st = resolved.stat()
    except (OSError, TypeError):
        return None
    return {"path": str(resolved), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _cache_one(video_id: str, path, target: Path, frames: int, short_side: int) -> dict:
    """Decode one video into ``target`` (atomically). Runs in a worker process when ``workers > 1``."""
    try:
        if path is None:
            raise DecodeError(video_id, "video file not found")
        source = source_of(path)  # before decoding: a file changed meanwhile is not matched later
        num_frames = count_frames(path)
        array = read_frames(path, sample_indices(num_frames, min(frames, num_frames)), short_side=short_side)
    except DecodeError as err:
        return {"video_id": video_id, "error": err}
    _write_npy_atomic(target, array)
    return {"video_id": video_id, "frames": int(array.shape[0]), "source_frames": num_frames, "source": source}


def _remove_stale_temporaries(root: Path) -> None:
    """Half-written files of a killed run (one ``vop prepare`` per cache folder at a time)."""
    for tmp in [*(root / "videos").glob(".*.tmp-*"), *root.glob(".*.tmp-*")]:
        tmp.unlink(missing_ok=True)


def _open_for_writing(root: Path, frames: int, short_side: int) -> FrameCache:
    settings = {"version": CACHE_VERSION, "frames": frames, "short_side": short_side,
                "layout": "videos/<key>.npy, uint8 [K, H, W, 3]"}
    settings_path = root / "cache.json"
    if settings_path.is_file():
        old = _check_settings(settings_path, _read_json(settings_path))
        if (old.get("frames"), old.get("short_side")) != (frames, short_side):
            raise ValueError(f"{settings_path} was built with frames={old.get('frames')}, "
                             f"short_side={old.get('short_side')}; asked for frames={frames}, "
                             f"short_side={short_side}: use another cache folder")
    (root / "videos").mkdir(parents=True, exist_ok=True)
    _write_json_atomic(settings_path, settings)
    return FrameCache(root)


def build_cache(records, root: str | os.PathLike, frames: int = 32, *, short_side: int,
                on_error: str = "skip", progress: bool = True, workers: int = 1) -> dict:
    """Decode each record's video once into ``root``; resumable. Returns a summary dict.

    A video that fails to decode (or whose file is missing) is reported by id and reason on one
    line and recorded under ``failed`` in ``videos.json``, or stops the run when
    ``on_error="raise"``. ``workers > 1`` decodes in that many processes.
    """
    root = Path(root)
    try:
        return _build(records, root, frames, short_side, on_error, progress, workers)
    except OSError as err:  # decoding errors are DecodeErrors: an OSError here is from writing
        raise _write_error(root, err) from None


def _write_error(root: Path, err: OSError) -> CacheWriteError:
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        reason = "disk full"
    else:
        name = re.sub(r"/\.([^/]+)\.tmp-\d+$", r"/\1", str(err.filename)) if err.filename else None
        reason = (err.strerror or type(err).__name__) + (f": {name}" if name else "")
    return CacheWriteError(f"cannot write the frame cache at {root} ({reason}); nothing half-written is left, "
                           "videos cached before are kept and a re-run resumes")


def _build(records, root: Path, frames: int, short_side: int, on_error: str, progress: bool, workers: int) -> dict:
    from tqdm import tqdm

    cache = _open_for_writing(root, frames, short_side)
    _remove_stale_temporaries(root)
    contents_path = root / CONTENTS_FILE
    contents = _read_contents(root)
    done, failed = contents.get("videos", {}), contents.get("failed", {})
    unique = list({r.video_id: r for r in records}.values())  # a video shared by records is decoded once
    todo = [r for r in unique if not cache.has(r.video_id)]
    for record in unique:
        if cache.has(record.video_id):
            entry = done.setdefault(record.video_id, {"file": str(cache.path_for(record.video_id).relative_to(root))})
            if "source" not in entry and record.path is not None:  # caches built before it was recorded
                entry["source"] = source_of(record.path)
    counts = {"decoded": 0, "skipped_done": len(unique) - len(todo), "failed": 0}
    jobs = [(r.video_id, r.path, cache.path_for(r.video_id), frames, short_side) for r in todo]
    with _executor(workers) as pool:
        results = pool.map(_cache_one, *zip(*jobs)) if jobs else []
        for n, result in enumerate(tqdm(results, total=len(jobs), desc="caching frames", unit="video",
                                        disable=not progress)):
            video_id = result["video_id"]
            if "error" in result:
                if on_error == "raise":
                    raise result["error"]
                from vop.cli.messages import shown  # the reason may quote a file name

                print(f"warning: skipping video {video_id!r}: {shown(result['error'])}", file=sys.stderr)
                failed[video_id] = result["error"].reason
                counts["failed"] += 1
                continue
            failed.pop(video_id, None)
            done[video_id] = {"file": str(cache.path_for(video_id).relative_to(root)),
                              "frames": result["frames"], "source_frames": result["source_frames"],
                              "source": result["source"]}
            counts["decoded"] += 1
            if n % CONTENTS_EVERY == CONTENTS_EVERY - 1:
                _write_json_atomic(contents_path, {"videos": done, "failed": failed})
    _write_json_atomic(contents_path, {"videos": done, "failed": failed})
    (root / LEGACY_CONTENTS_FILE).unlink(missing_ok=True)  # its content now lives in videos.json
    return {"videos": len(unique), **counts, "cached_total": len(done), "failed_total": len(failed),
            "cache": str(root)}


class _Serial:
    """The executor interface, in this process (no pickling, exceptions with full tracebacks)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def map(self, fn, *iterables):
        return map(fn, *iterables)


def _executor(workers: int):
    if workers <= 1:
        return _Serial()
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=workers)
