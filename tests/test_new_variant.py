"""A new prompt variant added from this file alone: a component class + one method line, registered
here, listed by ``vop methods``, trained one step by ``vop train`` and reloaded from its adapter.

Nothing in the package is edited: this is the path the README's "Adding a variant" describes.
"""

from __future__ import annotations

import json
from typing import ClassVar

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from vop.adapter import AdapterError, load_adapter
from vop.backbone.clip import build_clip
from vop.cli import main
from vop.model import METHODS, build_model, list_methods, register_method
from vop.prompts.base import COMPONENTS, init_tokens, register_component


class FirstLayerPrompts(nn.Module):
    """Toy variant: ``toy_length`` visual tokens shared by every frame, in the first layer only."""

    name, role = "toy-first-layer", "visual"
    defaults: ClassVar[dict] = {"toy_length": 3}

    def __init__(self, width: int, length: int):
        super().__init__()
        self.tokens = init_tokens(length, width)  # [n, D]

    @classmethod
    def from_config(cls, c: dict, clip_cfg, frames: int) -> FirstLayerPrompts:
        return cls(clip_cfg.vision.width, c["toy_length"])

    def prompts(self, i: int, cls: torch.Tensor) -> torch.Tensor | None:
        if i > 0:
            return None
        b, f, _ = cls.shape
        return self.tokens.expand(b, f, -1, -1)  # [B, F, n, D]


TOY = [{"type": "text", "text_length": 2}, {"type": "toy-first-layer", "toy_length": 2}]
TOY_PARAMS = 2 * 2 * 32 + 2 * 64  # tiny: text 2 layers x 2 tokens x width 32; 2 tokens x vision width 64


@pytest.fixture
def toy():
    """Register the toy component and method; afterwards the registries are as before."""
    components, methods = dict(COMPONENTS), dict(METHODS)
    register_component(FirstLayerPrompts)
    register_method("toy", TOY)
    yield
    COMPONENTS.clear()
    COMPONENTS.update(components)
    METHODS.clear()
    METHODS.update(methods)


RECIPE = """name: toy
seed: 0
model: {{backbone: {root}/tiny.safetensors, method: {method}, frames: 4{overrides}}}
data: {{dataset: csv, annotations: {root}/ann.csv, videos: {root}/videos, train_split: train,
        val_split: val, test_split: test, image_size: 32}}
optim: {{lr: 1.0e-2, batch_size: 4}}
eval: {{batch_size: 4}}
run: {{max_steps: 1}}
"""


def test_registered_variant_builds_lists_and_resolves(toy, capsys):
    assert "toy" in list_methods()
    model = build_model(build_clip("tiny", seed=0), "toy", frames=4, seed=0)
    assert model.method_config["components"][1] == {"type": "toy-first-layer", "toy_length": 2}
    assert model.parameter_budget()["trainable"] == TOY_PARAMS
    assert sorted(n for n, _ in model.trainable_named_parameters()) == ["prompts.text.tokens", "prompts.visual.tokens"]
    assert main(["methods", "--config", "tiny", "--frames", "4", "--method", "toy", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["trainable"] == TOY_PARAMS
    model = build_model(build_clip("tiny", seed=0), "toy", frames=4, overrides={"toy_length": 5})  # its own key
    assert model.parameter_budget()["trainable"] == 2 * 2 * 32 + 5 * 64


def test_registered_variant_trains_one_step_and_reloads(toy, tiny_retrieval_project):
    root = tiny_retrieval_project
    recipe = root / "toy.yaml"
    recipe.write_text(RECIPE.format(root=root, method="toy", overrides=""))
    assert main(["train", str(recipe), "--out", str(root / "run"), "--no-progress"]) == 0

    adapter = root / "run" / "adapter"
    meta = json.loads((adapter / "adapter.json").read_text())
    assert meta["method"] == "toy" and meta["method_config"]["components"][1]["type"] == "toy-first-layer"
    saved = load_file(str(adapter / "adapter.safetensors"))
    clip = build_clip("tiny", seed=0)
    init = dict(build_model(clip, "toy", frames=4, seed=0).trainable_named_parameters())
    assert sorted(saved) == sorted(init)
    assert not torch.equal(saved["prompts.visual.tokens"], init["prompts.visual.tokens"])  # one step moved it
    model = load_adapter(adapter, clip)
    assert all(torch.equal(p, saved[n]) for n, p in model.trainable_named_parameters())
    video = torch.randn(1, 4, 3, 32, 32)
    with torch.no_grad():
        plain = build_model(clip, "zeroshot", frames=4).encode_video(video)
        assert not torch.allclose(model.encode_video(video), plain)  # the toy tokens act on the frames

    METHODS.pop("toy")  # adapter.json holds the component list: the method name need not be registered
    assert load_adapter(adapter, clip).method == "toy"
    COMPONENTS.pop("toy-first-layer")  # ... but its component type must be
    with pytest.raises(AdapterError, match="unknown component type 'toy-first-layer'"):
        load_adapter(adapter, clip)


def test_a_recipe_can_declare_a_method_inline(toy, tiny_retrieval_project):
    """A method that is only a YAML: its name plus ``overrides: {components: [...]}``."""
    from vop.train.config import load_config

    root = tiny_retrieval_project
    recipe = root / "inline.yaml"
    recipe.write_text(RECIPE.format(root=root, method="vop-first-layer",
                                    overrides=", overrides: {components: [text, toy-first-layer]}"))
    cfg = load_config(recipe)
    model = build_model(build_clip("tiny", seed=0), cfg.model.method, cfg.model.frames, dict(cfg.model.overrides))
    assert model.method == "vop-first-layer" and "vop-first-layer" not in list_methods()
    assert model.parameter_budget()["trainable"] == 2 * 8 * 32 + 3 * 64  # both components' defaults


def test_registration_checks_the_contract(toy):
    class NoRole(nn.Module):
        name, defaults = "no-role", {}

        @classmethod
        def from_config(cls, c, clip_cfg, frames):
            return cls()

    with pytest.raises(TypeError, match="has no 'role'"):
        register_component(NoRole)
    NoRole.role = "pooling"
    with pytest.raises(ValueError, match="role 'pooling' is not one of"):
        register_component(NoRole)
    NoRole.role = "visual"
    with pytest.raises(TypeError, match="must be an nn.Module with prompts"):
        register_component(NoRole)

    class Clash(FirstLayerPrompts):
        pass

    with pytest.raises(ValueError, match="already registered"):
        register_component(Clash)
    with pytest.raises(ValueError, match="already registered"):
        register_method("toy", ["text"])
    with pytest.raises(KeyError, match="has no key"):
        register_method("toy-typo", [{"type": "toy-first-layer", "toy_lenght": 2}])
    with pytest.raises(KeyError, match="unknown component type 'nope'"):
        register_method("toy-nope", ["text", "nope"])
    assert "toy-typo" not in METHODS and "toy-nope" not in METHODS


def test_readme_example_runs_and_prints_what_it_says(toy, capsys, tmp_path):
    """The methods page's "Adding a variant" block (docs/methods.md), run as it stands; it prints its own comment."""
    import re
    import runpy
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "docs" / "methods.md").read_text()
    block = re.search(r"### Adding a variant\n.*?```python\n(.*?)```", readme, re.DOTALL).group(1)
    (tmp_path / "example.py").write_text(block)
    runpy.run_path(str(tmp_path / "example.py"))
    printed = capsys.readouterr().out.strip()
    assert printed == re.search(r"print\(model\.budget_line\(\)\)\s+# (.*)", block).group(1)
    assert printed.startswith("trainable params: 640 ||")  # text 2 x 8 x 32 + first layer 2 x 64
