"""``vop.train.setup``: what the loop gets before its first step. The image size and the text
length are the backbone's (its config owns them); a recipe that states another image size is one
line naming the recipe, the value and the backbone's size, exit status 2."""

from __future__ import annotations

import pytest

from vop.cli import main
from vop.train.config import load_config

RECIPE = """name: tiny
seed: 0
model: {{backbone: {root}/tiny.safetensors, method: {method}, frames: 4, overrides: {overrides}}}
data: {{dataset: csv, annotations: {root}/ann.csv, videos: {root}/videos, train_split: train,
        val_split: val, test_split: test{data}}}
optim: {{lr: 1.0e-2, epochs: 1, batch_size: 4}}
eval: {{batch_size: 4}}
"""


def recipe(root, data="", method="vop", overrides="{text_length: 2, visual_length: 2}"):
    path = root / "recipe.yaml"
    path.write_text(RECIPE.format(root=root, data=data, method=method, overrides=overrides))
    return path


def test_image_size_and_text_length_come_from_the_backbone(tiny_retrieval_project):
    from vop.train.setup import set_up

    root = tiny_retrieval_project
    cfg = load_config(recipe(root))
    assert cfg.data.image_size is None and cfg.data.context_length is None  # the recipe does not say
    run = set_up(cfg, root / "run")
    assert run.image_size == run.model.clip.cfg.vision.image_size == 32
    assert run.model.context_length == run.model.clip.cfg.text.context_length
    assert run.dataset.image_size == 32 and run.dataset.context_length == run.model.context_length
    assert run.optimizer is not None and run.total == 2 and run.progress.step == 0
    # a recipe may repeat the backbone's value
    assert set_up(load_config(recipe(root, ", image_size: 32")), root / "run2").image_size == 32


def test_a_method_without_trainable_tensors_gets_no_optimiser(tiny_retrieval_project):
    from vop.train.setup import set_up

    root = tiny_retrieval_project
    run = set_up(load_config(recipe(root, method="zeroshot", overrides="{}")), root / "run")
    assert run.optimizer is None and run.loader is None and run.ddp_model is None
    assert len(run.train_records) == 8 and len(run.val_records) == 2


def test_a_recipe_with_another_image_size_is_one_line(tiny_retrieval_project, capsys):
    root = tiny_retrieval_project
    path = recipe(root, ", image_size: 224")
    assert main(["train", str(path), "--out", str(root / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"vop train: error: {path}: data.image_size is 224 but the backbone ")
    assert "takes 32 px images" in err[0] and "tiny" in err[0]
    assert not (root / "run" / "checkpoints" / "last.pt").exists()


def test_evaluate_refuses_another_image_size(tiny_clip):
    from vop.eval.retrieval import evaluate
    from vop.model import build_model

    model = build_model(tiny_clip, "zeroshot", frames=2)
    with pytest.raises(ValueError, match=r"image_size 224 is not the backbone's \(tiny: 32 px\)"):
        evaluate(model, [], image_size=224, progress=False)
