"""Output that cannot deceive (issue 28): names and reasons from files are printed with control
characters escaped (no fake lines, no terminal escape sequences), torch's advice to turn off
weights-only loading is never shown, and errors name the file they are about."""

from __future__ import annotations

import json
import logging
import pathlib

import pytest
import torch
from conftest import color_video, write_video

from vop.backbone.clip import build_clip
from vop.backbone.loading import CheckpointError, load_clip, save_clip
from vop.cli import main
from vop.cli.messages import _ShownFormatter, error, no_torch_advice, shown

HOSTILE = "x\n  1  1.0000  /etc/passwd\x1b]0;pwned\x07\r\u202egnp.mp4"


def test_shown_escapes_what_drives_or_fakes_a_terminal_line():
    text = "a\nb\rc\td\x1b[2J\x07\x7f\x9b31m\u202e\u2066\u2028\udcff"
    assert shown(text) == "a\\nb\\rc\\td\\x1b[2J\\x07\\x7f\\x9b31m\\u202e\\u2066\\u2028\\udcff"
    assert shown("vidéo 日本 ok.mp4") == "vidéo 日本 ok.mp4"  # ordinary text untouched
    assert shown(5) == "5"


def test_log_records_are_shown_lines():
    record = logging.LogRecord("vop.index", logging.WARNING, __file__, 1, "skipping %s: %s", (HOSTILE, "bad"), None)
    line = _ShownFormatter("%(levelname)s %(name)s: %(message)s").format(record)
    assert "\n" not in line and "\x1b" not in line and "\r" not in line and line.endswith(": bad")


def test_torch_advice_to_turn_off_weights_only_is_never_shown(tmp_path, capsys):
    """A real refusal from torch.load(weights_only=True), passed on as a reason."""
    torch.save({"x": pathlib.PurePosixPath("a")}, tmp_path / "obj.pt")
    with pytest.raises(Exception) as info:
        torch.load(tmp_path / "obj.pt", weights_only=True)
    message = str(info.value)
    assert "weights_only" in message and "trust" in message  # what torch says ...
    assert error("eval", f"{tmp_path / 'obj.pt'}: {message}") == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "weights_only" not in err and "trust" not in err and "safe_globals" not in err  # ... never shown
    assert "obj.pt" in err and "PurePosixPath" in err  # the file and what it holds are
    ours = "m.pth: refused: the pickle needs code (it needs os.system); vop reads tensors only (weights_only=True)"
    assert no_torch_advice(ours) == ours  # vop's own wording is left alone


def test_index_and_search_print_hostile_names_escaped(tmp_path, capsys):
    torch.set_num_threads(1)
    backbone = save_clip(build_clip("tiny", seed=0), tmp_path / "tiny.safetensors")
    videos = tmp_path / "videos"
    write_video(videos / "a.mp4", color_video(num_frames=6, size=32, seed=0))
    write_video(videos / HOSTILE, color_video(num_frames=6, size=32, seed=1))
    (videos / "bad\nvop index: error: \x1b[2Jfake.mp4").write_bytes(b"not a video")
    idx = tmp_path / "idx"
    logging.getLogger("vop.index").propagate = True
    assert main(["index", str(videos), "--backbone", str(backbone), "--frames", "2", "--out", str(idx),
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out
    assert "undecodable: bad\\nvop index: error: \\x1b[2Jfake.mp4: " in out
    assert not any(line.startswith("vop index: error") for line in out.splitlines())
    assert main(["search", str(idx), "a query", "-k", "5"]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert len(lines) == 2, lines  # two results, two lines: no fake result line
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert any(line.endswith("\\x1b]0;pwned\\x07\\r\\u202egnp.mp4") for line in lines), lines
    assert main(["search", str(tmp_path / "no\x1b[2Jsuch"), "q"]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "no\\x1b[2Jsuch" in err


def _hf_folder(tmp_path, index: dict) -> pathlib.Path:
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "clip", "text_config": {}, "vision_config": {}}))
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return folder


@pytest.mark.parametrize("index, reason", [
    ({"metadata": {}}, "no 'weight_map' object"),
    ({"weight_map": {"a": "../../elsewhere.safetensors"}}, "expected a .safetensors file name"),
    ({"weight_map": {"a": 5}}, "expected a .safetensors file name"),
])
def test_a_bad_shard_index_names_the_file(tmp_path, index, reason):
    folder = _hf_folder(tmp_path, index)
    with pytest.raises(CheckpointError, match=reason) as info:
        load_clip(folder)
    assert str(folder / "model.safetensors.index.json") in str(info.value)


def test_a_shard_index_that_is_not_json_names_the_file(tmp_path):
    folder = _hf_folder(tmp_path, {})
    (folder / "model.safetensors.index.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON") as info:
        load_clip(folder)
    assert "model.safetensors.index.json" in str(info.value)


def test_argparse_errors_are_shown_escaped(capsys):
    """A shell glob can hand vop a hostile file name as an argument; argparse quotes it back."""
    with pytest.raises(SystemExit) as info:
        main(["search", "idx", "query", "extra\x1b[2J\nvop: fake line"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "extra\\x1b[2J\\nvop: fake line" in err


def test_loader_warnings_show_hostile_names_escaped(tmp_path, capsys):
    """Training/evaluation report an undecodable video in one line, its file name escaped."""
    from vop.data.annotations import VideoRecord
    from vop.data.dataset import VideoDataset, make_loader

    bad = tmp_path / "clip\n\x1b[2Jvop eval: R@1 100.0.mp4"
    bad.write_bytes(b"not a video")
    records = [VideoRecord("v\x1b]0;t\x07", bad, ["a caption"], "test")]
    for _ in make_loader(VideoDataset(records, frames=2, image_size=32), batch_size=1):
        pass
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err and len(err.strip().splitlines()) == 2, err
    assert "clip\\n\\x1b[2Jvop eval: R@1 100.0.mp4" in err
