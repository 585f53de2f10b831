"""The video benchmark on disk: clip records per split, lossless video files, the
``video,caption,group`` CSVs and ``metadata.json``; a world is written once per key and reused."""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from vop_demo.world.captions import VIDEO_TAILS, VIDEO_TEMPLATES, caption, choose_wording
from vop_demo.world.render import render_clip
from vop_demo.world.scene import random_scene, reverse_scene
from vop_demo.world.spec import SPLIT_CODES, SplitPairs, WorldSpec, stream_rng

WORLD_VERSION = 7  # bump when a change alters generated data (cached worlds are made again)


def make_split(seed: int, split: str, n_pairs: int, spec: WorldSpec, captions_per_clip: int) -> list[dict]:
    """``2 * n_pairs`` clip records: a clip (``...a``) then its reverse partner (``...b``). Partner
    captions use the same templates on the reversed event, so every caption has its twin."""
    clips = []
    for i in range(n_pairs):
        rng = stream_rng(seed, SPLIT_CODES[split], i)
        scene = random_scene(rng, spec, video=True)
        wordings = [choose_wording(rng, VIDEO_TEMPLATES, VIDEO_TAILS) for _ in range(captions_per_clip)]
        pair = f"{split}{i:05d}"
        for half, sc in (("a", scene), ("b", reverse_scene(scene))):
            # (caption, its twin) with duplicates dropped, in order
            texts = dict.fromkeys((caption(sc, t, tail), caption(reverse_scene(sc), t, tail)) for t, tail in wordings)
            clips.append({"id": pair + half, "pair": pair, "partner": pair + ("b" if half == "a" else "a"),
                          "split": split, "scene": sc, "captions": [c for c, _ in texts],
                          "twins": [t for _, t in texts]})
    return clips


def write_video(path: Path, frames: np.ndarray, fps: int, codec: str = "ffv1", pix_fmt: str = "bgr0") -> None:
    """Encode uint8 ``[T, H, W, 3]`` frames. The default, FFV1 in Matroska, is lossless: decoding
    gives back exactly ``frames``."""
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1], frames.shape[2]
        stream.pix_fmt = pix_fmt
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def world_key(seed: int, sizes: SplitPairs, spec: WorldSpec) -> str:
    blob = json.dumps({"seed": seed, "sizes": asdict(sizes), "spec": asdict(spec), "version": WORLD_VERSION},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


CAPTIONS_PER_CLIP = {"train": 3, "val": 1, "test": 2}


def generate_world(out_dir, seed: int = 0, sizes: SplitPairs | None = None, spec: WorldSpec | None = None,
                   progress: bool = True) -> Path:
    """Write (or reuse) a world under ``out_dir``: ``videos/<id>.mkv``, ``{train,val,test}.csv``
    (generic ``video,caption,group`` format; group = the reverse pair) and ``metadata.json``
    (every clip's scene, partner, captions and their twins). Partners are written as the clip's
    frames reversed, so the pair is exact by construction."""
    from tqdm.auto import tqdm

    sizes, spec = sizes or SplitPairs(), spec or WorldSpec()
    out = Path(out_dir)
    key = world_key(seed, sizes, spec)
    meta_path = out / "metadata.json"
    if meta_path.is_file() and json.loads(meta_path.read_text()).get("key") == key:
        return out
    (out / "videos").mkdir(parents=True, exist_ok=True)
    all_clips = []
    for split in ("train", "val", "test"):
        clips = make_split(seed, split, getattr(sizes, split), spec, CAPTIONS_PER_CLIP[split])
        for a in tqdm(clips[::2], desc=f"world {split}", disable=not progress, leave=False):
            frames = render_clip(a["scene"], spec)
            write_video(out / "videos" / f"{a['id']}.mkv", frames, spec.fps)
            write_video(out / "videos" / f"{a['partner']}.mkv", frames[::-1], spec.fps)
        with open(out / f"{split}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["video", "caption", "group"])
            writer.writerows((f"videos/{c['id']}.mkv", text, c["pair"]) for c in clips for text in c["captions"])
        all_clips += clips
    meta = {"key": key, "seed": seed, "sizes": asdict(sizes), "spec": asdict(spec), "clips": all_clips}
    meta_path.write_text(json.dumps(meta, indent=1))  # written last: marks a complete world
    return out


def load_metadata(world_dir) -> dict:
    """``metadata.json`` of a generated world, with ``by_id`` (clip id -> clip)."""
    path = Path(world_dir) / "metadata.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no demo world here (vop_demo.world.generate_world makes one)")
    meta = json.loads(path.read_text())
    meta["by_id"] = {c["id"]: c for c in meta["clips"]}
    return meta
