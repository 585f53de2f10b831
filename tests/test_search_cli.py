"""vop index / vop search through the command line, with backbone and adapter files on disk."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import color_video, write_video

from vop.backbone.clip import build_clip
from vop.backbone.loading import save_clip
from vop.cli import main


@pytest.fixture()
def files(tmp_path, capsys):
    torch.set_num_threads(1)
    backbone = save_clip(build_clip("tiny", seed=0), tmp_path / "tiny.safetensors")
    videos = tmp_path / "videos"
    for i in range(4):
        write_video(videos / f"v{i}.mp4", color_video(num_frames=8, size=32, seed=i))
    (videos / "broken.webm").write_bytes(b"not a video at all")
    (videos / "notes.txt").write_text("not a video")
    return backbone, videos, tmp_path / "index"


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_index_then_search_text_and_like(files, capsys):
    backbone, videos, index = files
    code, out, err = _run(
        capsys, "index", videos, "--backbone", backbone, "--frames", 4, "--out", index, "--quiet", "--json"
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["indexed"] == 4 and [e["path"] for e in report["errors"]] == ["broken.webm"]
    code, out, err = _run(capsys, "search", index, "a red square", "-k", 3, "--json")
    assert code == 0, err
    res = json.loads(out)["results"]
    assert [r["rank"] for r in res] == [1, 2, 3]
    assert [r["score"] for r in res] == sorted((r["score"] for r in res), reverse=True)
    assert all(r["file"].startswith(str(videos)) for r in res)
    code, out, err = _run(capsys, "search", index, "--like", videos / "v0.mp4", "-k", 10)
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == 3 and not any(line.endswith("v0.mp4") for line in lines)
    code, out, err = _run(
        capsys, "index", videos, "--backbone", backbone, "--frames", 4, "--out", index, "--quiet"
    )
    assert code == 0 and "0 encoded now" in out and "undecodable: broken.webm" in out


def test_search_refuses_a_different_backbone(files, capsys):
    backbone, videos, index = files
    assert (
        _run(capsys, "index", videos, "--backbone", backbone, "--frames", 4, "--out", index, "--quiet")[0]
        == 0
    )
    other = save_clip(build_clip("tiny", seed=1), backbone.parent / "other.safetensors")
    code, _, err = _run(capsys, "search", index, "query", "--backbone", other)
    assert code == 2 and len(err.strip().splitlines()) == 1  # one line naming the weights and the manifest
    assert str(other) in err and str(index / "manifest.json") in err and "sha256" in err


def test_cli_errors_are_clear(files, capsys):
    backbone, videos, index = files
    code, _, err = _run(capsys, "search", index, "x")
    assert code == 2 and "manifest.json not found" in err
    code, _, err = _run(capsys, "index", videos / "nope", "--backbone", backbone, "--out", index)
    assert code == 2 and "nope" in err
    assert (
        _run(capsys, "index", videos, "--backbone", backbone, "--frames", 4, "--out", index, "--quiet")[0]
        == 0
    )
    with pytest.raises(SystemExit) as info:  # refused by argparse at parse time (vop.cli.args)
        _run(capsys, "search", index, "x", "-k", 0)
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert err.strip().splitlines()[-1] == (
        "vop search: error: argument -k: 0 is out of range; expected an integer from 1 to 10000")


def test_cli_shards_then_from_shards(files, capsys):
    backbone, videos, index = files
    for i in range(2):
        code, out, err = _run(
            capsys,
            "index",
            videos,
            "--backbone",
            backbone,
            "--frames",
            4,
            "--out",
            index,
            "--shard",
            f"{i}/2",
            "--quiet",
        )
        assert code == 0, err
    code, out, err = _run(capsys, "index", "--from-shards", index / "embeddings", "--out", index, "--json")
    assert code == 0, err
    assert json.loads(out)["indexed"] == 4
    assert _run(capsys, "search", index, "anything", "--json")[0] == 0


def test_torchrun_environment_selects_the_shard(files, capsys, monkeypatch):
    backbone, videos, index = files
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        code, out, err = _run(
            capsys, "index", videos, "--backbone", backbone, "--frames", 4, "--out", index, "--quiet"
        )
        assert code == 0, err
        assert (
            f"shard {rank}/2 done" in out and (index / "embeddings" / f"_done-{rank}-of-2.json").is_file()
        )
    monkeypatch.delenv("WORLD_SIZE")
    code, out, _ = _run(capsys, "index", "--from-shards", index / "embeddings", "--out", index, "--json")
    assert code == 0 and json.loads(out)["indexed"] == 4


def test_empty_folder_gives_an_empty_index(tmp_path, files, capsys):
    backbone, _, _ = files
    (tmp_path / "empty").mkdir()
    code, _, err = _run(
        capsys, "index", tmp_path / "empty", "--backbone", backbone, "--out", tmp_path / "e", "--quiet"
    )
    assert code == 0, err
    code, out, err = _run(capsys, "search", tmp_path / "e", "anything", "--json")
    assert code == 0 and json.loads(out)["results"] == []


def test_real_torchrun_two_ranks_then_from_shards(files, capsys):
    import os
    import shutil
    import subprocess
    import sys

    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun not found")
    backbone, videos, index = files
    cmd = [
        torchrun,
        "--nproc_per_node",
        "2",
        "-m",
        "vop",
        "index",
        str(videos),
        "--backbone",
        str(backbone),
        "--frames",
        "4",
        "--out",
        str(index),
        "--quiet",
    ]
    proc = subprocess.run(
        cmd, check=False, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert proc.returncode == 0, proc.stderr
    assert "shard 0/2 done" in proc.stdout and "shard 1/2 done" in proc.stdout
    code, out, _ = _run(capsys, "index", "--from-shards", index / "embeddings", "--out", index, "--json")
    assert code == 0 and json.loads(out)["indexed"] == 4
