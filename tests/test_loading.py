"""load_clip / save_clip: every source format, wrappers, bundled names, and the error messages."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

import vop
from vop.backbone import loading
from vop.backbone.clip import CLIPConfig, get_config
from vop.backbone.loading import CheckpointError, load_clip, save_clip


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_save_clip_round_trip_keeps_config_and_hash(tiny_clip, tmp_path):
    path = save_clip(tiny_clip, tmp_path / "anything.safetensors")
    loaded = load_clip(path)  # the config travels in the file's metadata
    assert loaded.cfg == tiny_clip.cfg
    assert same_weights(loaded, tiny_clip)
    assert loaded.weights_sha256 == tiny_clip.weights_sha256
    assert (loaded.source_format, loaded.source) == ("safetensors", str(path.resolve()))
    assert not any(p.requires_grad for p in loaded.parameters()) and not loaded.training


def test_bundled_name_resolves_to_assets(tiny_clip, tmp_path, monkeypatch):
    monkeypatch.setattr(loading, "assets_dir", lambda: tmp_path)
    save_clip(tiny_clip, tmp_path / "my-tiny.safetensors")
    save_file({"x": torch.zeros(1)}, str(tmp_path / "not-a-clip.safetensors"))  # no config metadata
    assert set(loading.bundled_models()) == {"my-tiny"}
    loaded = vop.load_clip("my-tiny")
    assert (loaded.source_format, loaded.source) == ("bundled", "my-tiny")
    assert same_weights(loaded, tiny_clip)
    with pytest.raises(FileNotFoundError, match=r"'nope'.*bundled: my-tiny"):
        vop.load_clip("nope")


def test_training_wrappers_are_stripped(tiny_clip, tmp_path):
    wrapped = {"epoch": 3, "state_dict": {"module." + k: v for k, v in tiny_clip.state_dict().items()}}
    torch.save(wrapped, tmp_path / "ckpt.pt")
    assert same_weights(load_clip(tmp_path / "ckpt.pt", config="tiny"), tiny_clip)

    nested = {"model." + k: v for k, v in tiny_clip.state_dict().items()}
    save_file(nested, str(tmp_path / "open_clip.safetensors"))
    assert same_weights(load_clip(tmp_path / "open_clip.safetensors", config="tiny"), tiny_clip)


def test_config_from_file_name_and_argument(tiny_clip, tmp_path):
    torch.save(tiny_clip.state_dict(), tmp_path / "tiny_epoch3.bin")
    assert load_clip(tmp_path / "tiny_epoch3.bin").cfg.name == "tiny"
    assert load_clip(tmp_path / "tiny_epoch3.bin", config=get_config("tiny")).cfg.name == "tiny"
    assert load_clip(tmp_path / "tiny_epoch3.bin", config=get_config("tiny").to_dict()).cfg.name == "tiny"
    assert loading.config_from_filename(tmp_path / "ViT-B-32-openai.pt").name == "ViT-B-32"
    assert loading.config_from_filename(tmp_path / "weights.pt") is None


def test_unknown_architecture_asks_for_config(tiny_clip, tmp_path):
    torch.save(tiny_clip.state_dict(), tmp_path / "weights.pt")
    with pytest.raises(CheckpointError, match=r"weights.pt: cannot tell the architecture; pass config="):
        load_clip(tmp_path / "weights.pt")


def test_unknown_format(tmp_path):
    (tmp_path / "weights.onnx").write_bytes(b"\0")
    with pytest.raises(CheckpointError, match=r"weights.onnx: unknown checkpoint format '.onnx'"):
        load_clip(tmp_path / "weights.onnx")


def test_missing_and_unexpected_keys_are_listed(tiny_clip, tmp_path):
    state = dict(tiny_clip.state_dict())
    del state["visual.proj"]
    state["visual.extra_head.weight"] = torch.zeros(2)
    torch.save(state, tmp_path / "tiny.pt")
    with pytest.raises(CheckpointError) as err:
        load_clip(tmp_path / "tiny.pt")
    msg = str(err.value)
    assert "config 'tiny'" in msg
    assert "missing keys (1): visual.proj" in msg
    assert "unexpected keys (1): visual.extra_head.weight" in msg


def test_wrong_config_reports_shape_mismatch(tiny_clip, tmp_path):
    torch.save(tiny_clip.state_dict(), tmp_path / "w.pt")
    wider = CLIPConfig.from_dict({**get_config("tiny").to_dict(), "name": "wide", "embed_dim": 48})
    with pytest.raises(
        CheckpointError,
        match=r"config 'wide'.*shape mismatches \(2\): text_projection: file \(32, 32\) vs model \(32, 48\)",
    ):
        load_clip(tmp_path / "w.pt", config=wider)
    with pytest.raises(
        CheckpointError, match=r"config 'tiny-12'.*missing keys \(\d+\): transformer.resblocks.10"
    ):
        load_clip(tmp_path / "w.pt", config="tiny-12")


def test_hf_state_dict_without_directory_is_explained(tmp_path):
    torch.save({"text_model.embeddings.token_embedding.weight": torch.zeros(2, 2)}, tmp_path / "tiny.bin")
    with pytest.raises(CheckpointError, match="Hugging Face CLIPModel state dict; load the directory"):
        load_clip(tmp_path / "tiny.bin")


def test_directory_without_config(tmp_path):
    with pytest.raises(CheckpointError, match="config.json"):
        load_clip(tmp_path)


def test_hf_config_with_unsupported_activation(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "clip", "text_config": {"hidden_act": "relu"}, "vision_config": {}})
    )
    with pytest.raises(CheckpointError, match=r"text_config.hidden_act 'relu'"):
        load_clip(tmp_path)


def test_pickled_objects_are_refused(tmp_path):
    """weights_only=True: a checkpoint holding arbitrary Python objects is not unpickled."""
    import argparse

    torch.save({"visual.proj": argparse.Namespace(run="code")}, tmp_path / "tiny.pt")
    with pytest.raises(Exception, match="(?i)weights.only|unsupported global"):
        load_clip(tmp_path / "tiny.pt")


def test_vop_exports():
    assert vop.load_clip is load_clip
