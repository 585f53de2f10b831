"""Adapters: only trained tensors on disk, exact round trip, a different backbone is refused."""

import json

import pytest
import torch
from safetensors.torch import load_file

from vop.adapter import AdapterError, load_adapter, read_metadata, save_adapter
from vop.backbone.clip import build_clip
from vop.model import METHODS, build_model

FRAMES = 4


def inputs():
    tok = torch.zeros(2, 77, dtype=torch.long)
    tok[:, 0], tok[0, 1], tok[1, 1:3], tok[0, 2], tok[1, 3] = 49406, 320, torch.tensor([500, 600]), 49407, 49407
    return tok, torch.randn(2, FRAMES, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def perturb(model):
    """Make every trainable tensor non-trivial (as after training), deterministically."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _, p in model.trainable_named_parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.01)


@pytest.mark.parametrize("method", list(METHODS))
def test_round_trip_gives_identical_embeddings(tiny_clip, tmp_path, method):
    overrides = {"shallow_layers": 1} if method.startswith("vop-f") else None
    model = build_model(tiny_clip, method, frames=FRAMES, overrides=overrides)
    perturb(model)
    save_adapter(model, tmp_path / "a", extra={"step": 7})
    loaded = load_adapter(tmp_path / "a", build_clip("tiny", seed=0))
    tok, vid = inputs()
    with torch.no_grad():
        assert torch.equal(loaded.encode_text(tok), model.encode_text(tok))
        assert torch.equal(loaded.encode_video(vid), model.encode_video(vid))
    assert loaded.method == method and loaded.method_config == model.method_config
    tensors = load_file(str(tmp_path / "a" / "adapter.safetensors"))
    assert set(tensors) == {n for n, _ in model.trainable_named_parameters()}
    meta = read_metadata(tmp_path / "a")
    assert meta["extra"] == {"step": 7} and meta["frames"] == FRAMES and meta["context_length"] == 77
    assert meta["backbone"] == {"name": "tiny", "weights_sha256": tiny_clip.weights_sha256, "source": None,
                                "format": "random", "config": tiny_clip.cfg.to_dict()}
    assert meta["whole_model"] == (method == "full")
    assert not list((tmp_path / "a").glob(".*tmp*"))  # atomic writes leave no temporary files


def test_other_backbone_is_refused_naming_both(tiny_clip, tmp_path):
    save_adapter(build_model(tiny_clip, "vop", frames=FRAMES), tmp_path)
    other = build_clip("tiny", seed=1)
    with pytest.raises(AdapterError) as e:
        load_adapter(tmp_path, other)
    msg = str(e.value)
    assert tiny_clip.weights_sha256[:16] in msg and other.weights_sha256[:16] in msg
    with pytest.raises(AdapterError, match="tiny-12"):
        load_adapter(tmp_path, build_clip("tiny-12", seed=0))


def test_mismatched_tensors_are_listed(tiny_clip, tmp_path):
    save_adapter(build_model(tiny_clip, "vop", frames=FRAMES), tmp_path)
    meta = json.loads((tmp_path / "adapter.json").read_text())
    meta["method"], meta["method_config"] = "vop-p", build_model(tiny_clip, "vop-p", FRAMES).method_config
    (tmp_path / "adapter.json").write_text(json.dumps(meta))
    with pytest.raises(AdapterError, match=r"missing: \['prompts.visual.position'.*unexpected: \['prompts.visual.tokens'\]"):
        load_adapter(tmp_path, tiny_clip)


def test_missing_folder_is_a_clear_error(tiny_clip, tmp_path):
    with pytest.raises(AdapterError, match="adapter.json: not found"):
        load_adapter(tmp_path / "nope", tiny_clip)


def test_vop_adapter_on_vitb32_is_small(tmp_path):
    clip = build_clip("ViT-B-32")
    path = save_adapter(build_model(clip, "vop", frames=12), tmp_path) / "adapter.safetensors"
    assert path.stat().st_size < 0.6e6
    assert path.stat().st_size >= 122_880 * 4  # float32, nothing dropped
