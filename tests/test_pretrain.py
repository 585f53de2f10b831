"""The bundled tiny CLIP: loads by name, matches its record, and the script that made it runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vop.pretrain import DEFAULT_ASSETS, PretrainConfig, file_sha256, run, trim_tokens

RECORD = DEFAULT_ASSETS / "tiny-synthetic.json"


@pytest.fixture(scope="module")
def record() -> dict:
    if not RECORD.is_file():
        pytest.fail(f"{RECORD} is missing: run `python -m vop.pretrain` (the bundled model ships with vop)")
    return json.loads(RECORD.read_text())


def test_bundled_model_loads_by_name_and_matches_its_record(record):
    import vop

    model = vop.load_clip("tiny-synthetic")
    assert model.cfg.to_dict() == record["clip_config"]
    assert model.weights_sha256 == record["weights_sha256"]
    weights = DEFAULT_ASSETS / record["weights_file"]
    assert file_sha256(weights) == record["file_sha256"]
    assert weights.stat().st_size < 5_000_000  # "a few MB": it ships inside the package
    assert not any(p.requires_grad for p in model.parameters())


def test_record_says_how_to_reproduce_and_beats_chance(record):
    assert record["command"].startswith("python -m vop.pretrain")
    assert record["pretrain_config"]["seed"] == PretrainConfig().seed or "--seed" in record["command"]
    zs = record["zero_shot_heldout"]
    for direction in ("t2i", "i2t"):
        assert zs[direction]["R@1"] > 5 * zs["chance_R@1"], zs  # it learned the static world


def test_trimming_padding_leaves_text_embeddings_unchanged(tiny_clip):
    from vop import tokenize

    tokens = tokenize(["a red circle", "a small blue square in the top left and a green triangle"])
    full = tiny_clip.encode_text(tokens)
    short = tiny_clip.encode_text(trim_tokens(tokens))
    assert trim_tokens(tokens).shape[1] < tokens.shape[1]
    torch.testing.assert_close(short, full, rtol=0, atol=1e-6)


def test_pretraining_script_writes_a_loadable_bundle(tmp_path: Path):
    from vop.backbone.loading import load_clip

    cfg = PretrainConfig(config="tiny", train_frames=32, eval_frames=16, steps=3, batch_size=8, warmup=1,
                         threads=1)
    rec = run(cfg, tmp_path, progress=False)
    weights = tmp_path / "tiny.safetensors"
    model = load_clip(weights)
    assert model.weights_sha256 == rec["weights_sha256"]
    assert json.loads((tmp_path / "tiny.json").read_text())["zero_shot_heldout"]["t2i"]["queries"] == 16
    assert "--steps 3" in rec["command"] and "--config tiny" in rec["command"]
    # fp16 storage: every stored value is exactly representable in fp16
    sd = model.state_dict()
    assert all(torch.equal(t, t.half().float()) for t in sd.values())
