"""Config loading: bases, unknown keys, typed --set overrides, the test-split guard."""

from __future__ import annotations

import json

import pytest

from vop.train.config import TrainConfig, load_config


def write(path, text):
    path.write_text(text)
    return path


def test_base_merge_and_typed_overrides(tmp_path):
    write(tmp_path / "base.yaml", "seed: 3\nmodel: {method: vop, frames: 12}\noptim: {lr: 1e-3, epochs: 5}\n")
    cfg_path = write(tmp_path / "r.yaml", "base: base.yaml\nname: r\noptim: {lr: 5e-4}\n")
    cfg = load_config(cfg_path, ["optim.epochs=2", "model.grad_checkpointing=true", "data.val_split=null",
                                 "model.overrides.text_length=4", "optim.betas=[0.9, 0.98]"])
    assert cfg.name == "r" and cfg.seed == 3 and cfg.model.frames == 12
    assert cfg.optim.lr == 5e-4 and isinstance(cfg.optim.lr, float)  # YAML reads "5e-4" as a string
    assert cfg.optim.epochs == 2 and cfg.model.grad_checkpointing is True and cfg.data.val_split is None
    assert cfg.model.overrides == {"text_length": 4} and cfg.optim.betas == (0.9, 0.98)
    assert json.loads(json.dumps(cfg.to_dict()))["optim"]["lr"] == 5e-4


def test_unknown_key_names_file_and_key(tmp_path):
    p = write(tmp_path / "bad.yaml", "optim: {learning_rate: 0.1}\n")
    with pytest.raises(ValueError, match=r"bad.yaml.*optim.learning_rate"):
        load_config(p)
    with pytest.raises(ValueError, match="unknown config key"):
        load_config(write(tmp_path / "ok.yaml", "name: x\n"), ["optim.nope=1"])


def test_bad_values_are_clear(tmp_path):
    p = write(tmp_path / "c.yaml", "name: x\n")
    with pytest.raises(ValueError, match=r"optim.epochs.*int"):
        load_config(p, ["optim.epochs=many"])
    with pytest.raises(ValueError, match="key=value"):
        load_config(p, ["optim.epochs"])


def test_validation_split_may_not_be_the_test_split(tmp_path):
    p = write(tmp_path / "c.yaml", "data: {val_split: test-1ka, test_split: test-1ka}\n")
    with pytest.raises(ValueError, match="test split"):
        load_config(p)


def test_circular_base_is_an_error(tmp_path):
    write(tmp_path / "a.yaml", "base: b.yaml\n")
    write(tmp_path / "b.yaml", "base: a.yaml\n")
    with pytest.raises(ValueError, match="circular"):
        load_config(tmp_path / "a.yaml")


def test_defaults_are_the_paper_settings():
    cfg = TrainConfig()
    assert (cfg.optim.weight_decay, cfg.optim.epochs, cfg.optim.batch_size) == (0.2, 5, 32)
    assert cfg.model.frames == 12
    # image size and text length are the backbone's (224 px and 77 tokens for ViT-B-32)
    assert cfg.data.image_size is None and cfg.data.context_length is None
