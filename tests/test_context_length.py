"""The text context length is decided once, when the model is built: adapter.json records it and
training, in-training validation, `evaluate` and the index all tokenize to ``model.context_length``."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import color_video, write_video

from vop.adapter import load_adapter, save_adapter
from vop.backbone.clip import build_clip
from vop.model import build_model


@pytest.fixture()
def token_lengths(monkeypatch):
    """Every ``tokenize`` call's ``context_length``, wherever it is called from."""
    from vop.backbone import tokenizer

    seen: list[int] = []
    real = tokenizer.tokenize

    def spy(texts, context_length=77, truncate=True):
        seen.append(context_length)
        return real(texts, context_length=context_length, truncate=truncate)

    monkeypatch.setattr(tokenizer, "tokenize", spy)
    return seen


def test_saved_in_adapter_json_and_loaded_back(tiny_clip, tmp_path):
    model = build_model(tiny_clip, "text-prompt", frames=4, context_length=16)
    assert model.context_length == 16
    save_adapter(model, tmp_path / "a")
    assert json.loads((tmp_path / "a" / "adapter.json").read_text())["context_length"] == 16
    assert load_adapter(tmp_path / "a", build_clip("tiny", seed=0)).context_length == 16


def test_old_adapter_without_the_field_loads_with_77(tiny_clip, tmp_path):
    save_adapter(build_model(tiny_clip, "vop", frames=4, context_length=16), tmp_path)
    meta = json.loads((tmp_path / "adapter.json").read_text())
    del meta["context_length"]
    (tmp_path / "adapter.json").write_text(json.dumps(meta))
    assert tiny_clip.cfg.text.context_length == 77
    assert load_adapter(tmp_path, tiny_clip).context_length == 77


@pytest.mark.parametrize("bad", [1, 78])
def test_outside_the_backbone_positions_is_refused(tiny_clip, bad):
    with pytest.raises(ValueError, match=r"context_length must be in 2\.\.77"):
        build_model(tiny_clip, "zeroshot", frames=4, context_length=bad)


def test_evaluate_and_index_read_it_from_the_model(tiny_clip, tmp_path, token_lengths):
    from vop.data.annotations import VideoRecord
    from vop.eval.retrieval import evaluate
    from vop.index.encoder import VideoEncoder

    model = build_model(tiny_clip, "text-prompt", frames=2, context_length=12)
    records = [VideoRecord(f"v{i}", write_video(tmp_path / f"v{i}.mp4", color_video(6, 32, seed=i)),
                           [f"clip {i}"], "test") for i in range(2)]
    evaluate(model, records, image_size=32, batch_size=2, progress=False)
    assert token_lengths == [12]
    vectors = VideoEncoder(tiny_clip, model, "tiny").encode_texts(["a query"])
    assert token_lengths == [12, 12] and vectors.shape == (1, tiny_clip.cfg.embed_dim)
    # the same caption, the same embedding whichever path encodes it
    with torch.no_grad():
        from vop.eval.retrieval import encode_texts

        direct = encode_texts(model, ["a query"], 1, torch.device("cpu"), progress=False).numpy()
    assert (abs(direct - vectors) < 1e-6).all()


def test_training_validation_and_adapter_use_the_configured_length(tiny_retrieval_project, token_lengths):
    from test_train_e2e import write_recipe

    from vop.cli import main

    root = tiny_retrieval_project
    args = ["train", str(write_recipe(root)), "--out", str(root / "run"), "--no-progress",
            "--set", "data.context_length=16", "--set", "optim.epochs=1"]
    assert main(args) == 0
    meta = json.loads((root / "run" / "adapter" / "adapter.json").read_text())
    assert meta["context_length"] == 16
    assert meta["extra"]["validation"]["texts"] == 4  # validation ran (2 val videos x 2 captions) ...
    assert token_lengths and set(token_lengths) == {16}  # ... and it, like the training data, used 16
    token_lengths.clear()
    assert main(["eval", "--adapter", str(root / "run" / "adapter"), "--dataset", "csv", "--annotations",
                 str(root / "ann.csv"), "--videos", str(root / "videos"), "--split", "test", "--no-progress"]) == 0
    assert set(token_lengths) == {16}
