"""One backbone reference (adapter.json and manifest.json write the same object) resolved by one
function: ``--backbone`` wins, the recorded sha256 must match, old files keep loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import color_video, write_video

from vop.adapter import save_adapter
from vop.backbone import loading
from vop.backbone.clip import CLIPConfig, TextCfg, VisionCfg, build_clip
from vop.backbone.loading import load_clip, save_clip
from vop.backbone.reference import BackboneMismatchError, BackboneRef, resolve_backbone
from vop.cli import main
from vop.index.build import build_index
from vop.index.encoder import VideoEncoder
from vop.index.manifest import read_manifest
from vop.model import build_model

FRAMES = 2


@pytest.fixture()
def setup(tmp_path):
    """A backbone file, an adapter trained on it, two videos, and two indexes (zero-shot, adapter)."""
    torch.set_num_threads(1)
    backbone = save_clip(build_clip("tiny", seed=0), tmp_path / "tiny.safetensors")
    clip = load_clip(backbone)
    adapter = save_adapter(build_model(clip, "vop", frames=FRAMES, seed=1), tmp_path / "adapter")
    videos = tmp_path / "videos"
    for i in range(2):
        write_video(videos / f"v{i}.mp4", color_video(num_frames=6, size=32, seed=i))
    build_index(videos, tmp_path / "idx-zs", VideoEncoder.from_clip(clip, frames=FRAMES), progress=False)
    build_index(videos, tmp_path / "idx-vop", VideoEncoder.from_clip(clip, adapter), progress=False)
    return {"tmp": tmp_path, "backbone": backbone, "adapter": adapter, "videos": videos}


def _one_line(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"vop {command}: error: "), err
    return err


def test_adapter_and_manifest_record_the_same_reference(setup):
    adapter = json.loads((setup["adapter"] / "adapter.json").read_text())["backbone"]
    manifest = json.loads((setup["tmp"] / "idx-vop" / "manifest.json").read_text())["backbone"]
    assert adapter == manifest
    assert adapter["source"] == str(setup["backbone"].resolve()) and adapter["format"] == "safetensors"
    assert adapter["weights_sha256"] == build_clip("tiny", seed=0).weights_sha256
    assert adapter["config"] == build_clip("tiny", seed=0).cfg.to_dict()
    assert read_manifest(setup["tmp"] / "idx-vop").backbone == BackboneRef.from_dict(adapter)


def _counting_loader(monkeypatch) -> list:
    calls = []
    real = loading.load_clip

    def load(source, *args, **kwargs):
        calls.append(str(source))
        return real(source, *args, **kwargs)

    monkeypatch.setattr(loading, "load_clip", load)
    monkeypatch.setattr("vop.load_clip", load)
    return calls


def test_one_backbone_value_travels_from_serve_and_search_to_the_model(setup, monkeypatch, capsys):
    pytest.importorskip("fastapi")
    from vop.serve.service import load_service

    moved = setup["backbone"].rename(setup["tmp"] / "moved.safetensors")  # the recorded path is gone
    calls = _counting_loader(monkeypatch)
    indexes = [str(setup["tmp"] / "idx-zs"), str(setup["tmp"] / "idx-vop")]
    service = load_service(indexes, [f"a={setup['adapter']}"], backbone=str(moved))
    try:
        assert calls == [str(moved)]  # loaded once, from the one value given, for both indexes
        clips = {id(c.searcher.encoder.model.clip) for c in service.collections.values()}
        assert len(clips) == 1
    finally:
        service.close()

    calls.clear()
    assert main(["search", indexes[1], "a video", "--backbone", str(moved), "--json"]) == 0
    assert calls == [str(moved)]
    capsys.readouterr()
    calls.clear()  # without --backbone the recorded file is looked for (and is gone): one line says so
    assert main(["search", indexes[1], "a video"]) == 2
    assert calls == [str(setup["backbone"].resolve())]
    assert "tiny.safetensors" in _one_line(capsys, "search")


def test_a_different_backbone_is_one_line_naming_both_files(setup, capsys):
    other = save_clip(build_clip("tiny", seed=1), setup["tmp"] / "other.safetensors")
    code = main(["eval", "--adapter", str(setup["adapter"]), "--backbone", str(other), "--dataset", "csv",
                 "--annotations", str(setup["tmp"] / "none.csv")])
    assert code == 2
    err = _one_line(capsys, "eval")
    assert str(other) in err and str(setup["adapter"] / "adapter.json") in err and "sha256" in err
    with pytest.raises(BackboneMismatchError):
        resolve_backbone(BackboneRef.of(load_clip(setup["backbone"])), other)
    assert main(["index", str(setup["videos"]), "--adapter", str(setup["adapter"]), "--backbone", str(other),
                 "--out", str(setup["tmp"] / "idx-new"), "--quiet"]) == 2
    assert "adapter.json" in _one_line(capsys, "index")


def test_index_without_backbone_uses_the_adapters_or_the_indexs(setup, capsys):
    out = setup["tmp"] / "idx-new"
    assert main(["index", str(setup["videos"]), "--adapter", str(setup["adapter"]), "--out", str(out),
                 "--quiet", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["indexed"] == 2
    write_video(setup["videos"] / "v9.mp4", color_video(num_frames=6, size=32, seed=9))
    assert main(["index", str(setup["videos"]), "--out", str(setup["tmp"] / "idx-zs"), "--frames", str(FRAMES),
                 "--quiet", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["encoded"] == 1  # the recorded backbone, the new file only


def _old_adapter(adapter: Path, source: str) -> None:
    """Rewrite adapter.json's backbone as vop wrote it before the reference: source "<format>:<path>"."""
    meta = json.loads((adapter / "adapter.json").read_text())
    meta["backbone"] = {"name": meta["backbone"]["name"], "weights_sha256": meta["backbone"]["weights_sha256"],
                        "source": source}
    (adapter / "adapter.json").write_text(json.dumps(meta))


def test_old_adapter_json_still_loads(setup, capsys):
    _old_adapter(setup["adapter"], f"safetensors:{setup['backbone'].resolve()}")
    out = setup["tmp"] / "idx-old-adapter"
    assert main(["index", str(setup["videos"]), "--adapter", str(setup["adapter"]), "--out", str(out),
                 "--quiet"]) == 0
    manifest = read_manifest(out)
    assert (manifest.backbone.source, manifest.backbone.format) == (str(setup["backbone"].resolve()), "safetensors")
    assert main(["adapter", "inspect", str(setup["adapter"])]) == 0
    assert f"(safetensors: {setup['backbone'].resolve()})" in capsys.readouterr().out
    _old_adapter(setup["adapter"], "random")  # trained on a random init: nothing to load from
    assert main(["index", str(setup["videos"]), "--adapter", str(setup["adapter"]), "--out", str(out),
                 "--quiet"]) == 2
    assert "pass --backbone" in _one_line(capsys, "index")


def _format_1(index: Path) -> None:
    """Rewrite manifest.json as format 1 wrote it: three flat backbone_* keys, a plain source path."""
    data = json.loads((index / "manifest.json").read_text())
    ref = data.pop("backbone")
    data.update(format=1, backbone_name=ref["name"], backbone_source=ref["source"],
                backbone_sha256=ref["weights_sha256"])
    (index / "manifest.json").write_text(json.dumps(data))


def test_format_1_manifest_still_loads_and_is_upgraded_on_update(setup, capsys):
    index = setup["tmp"] / "idx-zs"
    _format_1(index)
    assert read_manifest(index).backbone.source == str(setup["backbone"].resolve())
    assert main(["search", str(index), "a video", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["results"]) == 2
    assert main(["index", str(setup["videos"]), "--out", str(index), "--frames", str(FRAMES), "--quiet"]) == 0
    assert json.loads((index / "manifest.json").read_text())["format"] == 2


def test_recorded_config_loads_a_bare_state_dict(tmp_path, capsys):
    """A state dict that declares no architecture loads from the config the index recorded."""
    torch.set_num_threads(1)
    cfg = CLIPConfig("my-net", 16, VisionCfg(32, 1, 2, 8, 32), TextCfg(16, 1, 2))
    weights = tmp_path / "weights.pt"
    torch.save(build_clip(cfg, seed=0).state_dict(), weights)
    with pytest.raises(ValueError, match="cannot tell the architecture"):
        load_clip(weights)
    videos = tmp_path / "videos"
    write_video(videos / "v0.mp4", color_video(num_frames=6, size=32, seed=0))
    build_index(videos, tmp_path / "idx", VideoEncoder.from_clip(load_clip(weights, config=cfg), frames=FRAMES),
                progress=False)
    assert main(["search", str(tmp_path / "idx"), "a video", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["path"] == "v0.mp4"


@pytest.mark.parametrize("old,source,fmt", [
    ("safetensors:/w/tiny.safetensors", "/w/tiny.safetensors", "safetensors"),
    ("openai-torchscript:/w/ViT-B-32.pt", "/w/ViT-B-32.pt", "openai-torchscript"),
    ("bundled:tiny-synthetic", "tiny-synthetic", "bundled"),
    ("random", None, "random"),
    ("unknown", None, None),
    ("/plain/path.pt", "/plain/path.pt", None),  # a format-1 manifest's source
])
def test_old_source_spellings(old, source, fmt):
    ref = BackboneRef.from_dict({"name": "tiny", "weights_sha256": "ab" * 32, "source": old})
    assert (ref.source, ref.format, ref.config) == (source, fmt, None)


def test_a_hostile_backbone_entry_is_one_line(setup, capsys):
    path = setup["tmp"] / "idx-zs" / "manifest.json"
    data = json.loads(path.read_text())
    data["backbone"]["source"] = 5
    path.write_text(json.dumps(data))
    assert main(["search", str(path.parent), "a video"]) == 2
    assert "backbone.source must be a string" in _one_line(capsys, "search")
