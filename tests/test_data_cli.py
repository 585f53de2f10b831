"""`vop data check` and `vop prepare` end to end on small inputs."""

from __future__ import annotations

import json

from vop.cli import main
from vop.data.cache import FrameCache


def test_data_check_real_msrvtt_reports_missing_captions_file(real_data, capsys):
    code = main(["data", "check", "msrvtt", "--annotations", str(real_data / "msrvtt"), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1  # problems were found: MSRVTT_data.json is absent
    assert report["splits"]["test-1ka"]["records"] == 1000
    assert any("MSRVTT_data.json" in p and "9000 videos" in p for p in report["problems"])


def test_data_check_msvd_clean(real_data, capsys):
    code = main(["data", "check", "msvd", "--annotations", str(real_data / "msvd")])
    out = capsys.readouterr().out
    assert code == 0 and "no problems found" in out
    assert "30 records" in out and "1,328 captions" in out


def test_prepare_builds_cache_and_reports(make_video, real_data, tmp_path, capsys):
    videos = tmp_path / "videos"
    for i in range(2):
        make_video(f"videos/clip{i}.mp4", num_frames=10, size=48, seed=i)
    (videos / "broken.mp4").write_bytes((real_data / "videos/decord/corrupted.mp4").read_bytes())
    ann = tmp_path / "ann.csv"
    ann.write_text("video,caption\nclip0.mp4,red things\nclip1.mp4,blue things\nbroken.mp4,nothing\n"
                   "missing.mp4,never seen\n")
    args = ["prepare", "csv", "--annotations", str(ann), "--videos", str(videos), "--cache",
            str(tmp_path / "cache"), "--frames", "4", "--size", "32", "--no-progress"]
    assert main(args) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert (summary["decoded"], summary["failed"]) == (2, 2)
    assert "missing 1" in captured.out and "broken.mp4" in captured.err
    cache = FrameCache(tmp_path / "cache")
    assert cache.load("clip0.mp4").shape == (4, 32, 32, 3)
    assert set(cache.failed) == {"broken.mp4", "missing.mp4"}
    assert main(args) == 0  # resumes: nothing left to decode
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["skipped_done"] == 2


def test_data_check_probe_finds_truncated_video(real_data, tmp_path, capsys):
    ann = tmp_path / "ann.csv"
    ann.write_text("video,caption\nmmaction2/test.mp4,a pool\ndecord/corrupted.mp4,broken\nnot/there.mp4,x\n")
    code = main(["data", "check", "csv", "--annotations", str(ann), "--videos", str(real_data / "videos"),
                 "--probe", "--json"])
    entry = json.loads(capsys.readouterr().out)["splits"]["all"]
    assert code == 1
    assert (entry["videos_found"], entry["videos_missing"], entry["videos_corrupt"]) == (2, 1, 1)


def test_prepare_takes_the_image_size_from_a_backbone_config(make_video, tmp_path, capsys):
    """No --size: the frames get the image size of --config (ViT-B-32 by default), read from the config."""
    make_video("videos/clip0.mp4", num_frames=6, size=48, seed=0)
    ann = tmp_path / "ann.csv"
    ann.write_text("video,caption\nclip0.mp4,red things\n")
    base = ["prepare", "csv", "--annotations", str(ann), "--videos", str(tmp_path / "videos"), "--frames", "2",
            "--no-progress", "--cache"]
    assert main([*base, str(tmp_path / "tiny"), "--config", "tiny"]) == 0
    assert json.loads((tmp_path / "tiny" / "cache.json").read_text())["short_side"] == 32
    assert main([*base, str(tmp_path / "default")]) == 0
    assert json.loads((tmp_path / "default" / "cache.json").read_text())["short_side"] == 224  # ViT-B-32's
    capsys.readouterr()
    assert main([*base, str(tmp_path / "x"), "--config", "ViT-X"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vop prepare: error: unknown CLIP config 'ViT-X'")
