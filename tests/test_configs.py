"""Every recipe in configs/ loads, names a real dataset split, and builds its model (tiny backbone)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from vop.backbone.clip import get_config
from vop.train.config import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
RECIPES = sorted(p for p in CONFIGS.glob("*/*.yaml") if p.parent.name not in ("base", "methods"))


def _generator():
    spec = importlib.util.spec_from_file_location("make_recipes", CONFIGS / "make_recipes.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_recipes_are_complete_and_up_to_date():
    gen = _generator()
    expected = gen.recipes()
    assert len(expected) == len(gen.DATASETS) * len(gen.METHODS) and len(gen.METHODS) >= 13  # one per methods/*.yaml
    assert sorted(expected) == RECIPES
    for path, text in expected.items():
        assert path.read_text() == text, f"{path} differs from configs/make_recipes.py; re-run it"


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_recipe_loads_and_builds(path, tiny_clip):
    from vop.data.annotations import splits_of
    from vop.model import build_model

    cfg = load_config(path)
    assert cfg.name == f"{path.parent.name}-{path.stem}" and cfg.model.method == path.stem
    assert (cfg.optim.weight_decay, cfg.optim.epochs, cfg.optim.batch_size, cfg.model.frames) == (0.2, 5, 32, 12)
    # 224 px and 77 tokens are the backbone's: read from its config, never repeated by a recipe
    assert cfg.data.image_size is None and cfg.data.context_length is None
    backbone = get_config(Path(cfg.model.backbone).stem)
    assert (backbone.vision.image_size, backbone.text.context_length) == (224, 77)
    assert cfg.data.val_split != cfg.data.test_split
    for split in (cfg.data.train_split, cfg.data.val_split, cfg.data.test_split):
        assert split in splits_of(cfg.data.dataset)
    if cfg.model.method != "zeroshot":
        assert 1e-7 <= cfg.optim.lr <= 1e-2  # the paper's search range [1e-6, 1e-2], CLIP4Clip's 1e-7
    model = build_model(tiny_clip, cfg.model.method, cfg.model.frames, overrides=dict(cfg.model.overrides), seed=0)
    assert (model.parameter_budget()["trainable"] > 0) == (cfg.model.method != "zeroshot")
