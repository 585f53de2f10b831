"""Our CLIP equals transformers' CLIPModel with the same weights, through every loader.

A random-weight Hugging Face CLIPModel, every parameter perturbed (``perturb_every_parameter``:
a unit LayerNorm would hide a misplaced norm), is saved with ``save_pretrained`` and loaded with
``vop.load_clip``; image and text embeddings must agree to 1e-5 (unit-normalised, float32).
The same weights then travel through an OpenAI-layout state dict and a TorchScript archive
built by the test, and must give the same embeddings and the same sha256.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import vop
from vop.backbone.clip import CLIPConfig, get_config
from vop.backbone.formats.hf import config_from_hf, config_to_hf
from vop.testing import perturb_every_parameter

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

TOL = 1e-5
CAPTIONS = ["a dog catches a frisbee", "a person is connecting something to system", "cooking pasta"]


def hf_config(cfg: CLIPConfig):
    """A transformers CLIPConfig with the sizes of our ``cfg``."""
    return transformers.CLIPConfig(**config_to_hf(cfg))


def random_hf_clip(cfg: CLIPConfig, seed: int):
    """A transformers CLIPModel whose every tensor (biases, LayerNorms, class and positional
    embeddings included) is perturbed away from its init (``perturb_every_parameter``)."""
    model = transformers.CLIPModel(hf_config(cfg)).eval()
    perturb_every_parameter(model, seed)
    with torch.no_grad():
        model.logit_scale.fill_(2.5)
    return model


def hf_embeddings(model, images, tokens):
    with torch.no_grad():
        img = model.get_image_features(pixel_values=images).pooler_output
        txt = model.get_text_features(input_ids=tokens).pooler_output
    return F.normalize(img, dim=-1), F.normalize(txt, dim=-1)


def our_embeddings(clip, images, tokens):
    with torch.no_grad():
        return F.normalize(clip.encode_image(images), dim=-1), F.normalize(clip.encode_text(tokens), dim=-1)


def assert_close(ours, theirs):
    for a, b, what in zip(ours, theirs, ("image", "text")):
        diff = (a - b).abs().max().item()
        assert diff <= TOL, f"{what} embeddings differ by {diff:.2e}"


def torchscript_archive(state: dict[str, torch.Tensor], path, dtype=torch.float32, image_size=224):
    """A TorchScript file holding ``state`` under OpenAI's names, like OpenAI's release archives."""
    root = nn.Module()
    extras = {
        "input_resolution": torch.tensor(image_size),
        "context_length": torch.tensor(77),
        "vocab_size": torch.tensor(49408),
    }
    for key, tensor in [*state.items(), *extras.items()]:
        *parents, leaf = key.split(".")
        module = root
        for name in parents:
            if not hasattr(module, name):
                module.add_module(name, nn.Module())
            module = getattr(module, name)
        if key in extras:
            module.register_buffer(leaf, tensor)
        else:
            module.register_parameter(leaf, nn.Parameter(tensor.to(dtype), requires_grad=False))
    torch.jit.script(root).save(str(path))
    return path


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf_tiny")
    model = random_hf_clip(get_config("tiny"), seed=0)
    model.save_pretrained(str(folder))
    return model, folder


@pytest.fixture(scope="module")
def tiny_inputs():
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    return images, vop.tokenize(CAPTIONS)


def test_hf_directory_equals_transformers(tiny_hf, tiny_inputs):
    model, folder = tiny_hf
    clip = vop.load_clip(folder)
    assert clip.cfg.to_dict() == {**get_config("tiny").to_dict()}  # config.json maps back to 'tiny'
    assert (clip.source_format, clip.source) == ("hf", str(folder.resolve()))
    assert_close(our_embeddings(clip, *tiny_inputs), hf_embeddings(model, *tiny_inputs))
    assert clip.logit_scale.item() == pytest.approx(model.logit_scale.item())


def test_hf_gelu_variant(tmp_path, tiny_inputs):
    """open_clip's LAION models use exact GELU; hidden_act 'gelu' must select it."""
    cfg = CLIPConfig.from_dict({**get_config("tiny").to_dict(), "quick_gelu": False})
    model = random_hf_clip(cfg, seed=3)
    model.save_pretrained(str(tmp_path))
    clip = vop.load_clip(tmp_path)
    assert clip.cfg.quick_gelu is False
    assert_close(our_embeddings(clip, *tiny_inputs), hf_embeddings(model, *tiny_inputs))


def test_openai_state_dict_and_torchscript_equal_transformers(tiny_hf, tiny_inputs, tmp_path):
    model, folder = tiny_hf
    reference = hf_embeddings(model, *tiny_inputs)
    from_hf = vop.load_clip(folder)

    plain = tmp_path / "tiny.pt"  # the file name names the config
    torch.save(from_hf.state_dict(), plain)
    from_plain = vop.load_clip(plain)
    assert (from_plain.source_format, from_plain.source) == ("state-dict", str(plain.resolve()))
    assert_close(our_embeddings(from_plain, *tiny_inputs), reference)

    archive = torchscript_archive(from_hf.state_dict(), tmp_path / "weights.pt", image_size=32)
    from_script = vop.load_clip(archive, config="tiny")
    assert from_script.source_format == "openai-torchscript"
    assert_close(our_embeddings(from_script, *tiny_inputs), reference)

    # the same weights give the same hash whatever the file format
    assert from_hf.weights_sha256 == from_plain.weights_sha256 == from_script.weights_sha256


def test_vit_b32_shapes_equal_transformers(tmp_path):
    """The real ViT-B/32 architecture (random weights): HF directory, then an fp16 OpenAI-style archive."""
    model = random_hf_clip(get_config("ViT-B-32"), seed=0)
    model.save_pretrained(str(tmp_path / "hf"))
    clip = vop.load_clip(tmp_path / "hf")
    assert clip.cfg.name == "ViT-B-32"
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    tokens = vop.tokenize(CAPTIONS[:2])
    assert_close(our_embeddings(clip, images, tokens), hf_embeddings(model, images, tokens))
    del model

    # OpenAI's release is a TorchScript archive in fp16, named after the model
    archive = torchscript_archive(clip.state_dict(), tmp_path / "ViT-B-32.pt", dtype=torch.float16)
    from_script = vop.load_clip(archive)
    assert from_script.cfg.name == "ViT-B-32"
    for name, tensor in clip.state_dict().items():
        assert torch.equal(from_script.state_dict()[name], tensor.half().float()), name


def test_text_padding_is_cut_without_changing_results(tiny_clip):
    """encode_text runs only up to the batch's last EOT; the full-length pass gives the same vectors."""
    tokens = vop.tokenize(CAPTIONS)
    with torch.no_grad():
        fast = tiny_clip.encode_text(tokens)
        x = tiny_clip.transformer(tiny_clip.embed_text(tokens), is_causal=True)  # all 77 positions
        full = tiny_clip.pool_text(x, tiny_clip.eot_index(tokens))
    assert (fast - full).abs().max().item() <= 1e-5


def test_fast_inference_paths_equal_autograd_paths(tiny_clip):
    """The in-place QuickGELU / residual sums used without autograd give the autograd path's numbers,
    and gradients still flow to a trainable input through the frozen blocks."""
    block = tiny_clip.visual.transformer.resblocks[0]
    x = torch.randn(2, 17, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        fast = block(x)
    x_trainable = x.clone().requires_grad_(True)
    slow = block(x_trainable)
    assert torch.equal(fast, slow.detach())
    slow.square().sum().backward()
    assert x_trainable.grad is not None and x_trainable.grad.abs().sum() > 0
    # reference: the plain formula, by hand
    h = block.ln_1(x)
    ref = x + block.attn(h)
    h = block.ln_2(ref)
    hidden = block.mlp.c_fc(h)
    ref = ref + block.mlp.c_proj(hidden * torch.sigmoid(1.702 * hidden))
    assert torch.equal(fast, ref.detach())
    assert torch.equal(x, x_trainable.detach())  # the input was not modified in place


def test_hf_directory_with_bin_or_shards(tiny_hf, tiny_inputs, tmp_path):
    """Older folders hold pytorch_model.bin; large ones are sharded with an index file."""
    import json
    import shutil

    from safetensors.torch import load_file, save_file

    model, folder = tiny_hf
    reference = hf_embeddings(model, *tiny_inputs)
    state = load_file(str(folder / "model.safetensors"))

    as_bin = tmp_path / "bin"
    as_bin.mkdir()
    shutil.copy(folder / "config.json", as_bin / "config.json")
    torch.save(state, as_bin / "pytorch_model.bin")
    assert_close(our_embeddings(vop.load_clip(as_bin), *tiny_inputs), reference)

    sharded = tmp_path / "sharded"
    sharded.mkdir()
    shutil.copy(folder / "config.json", sharded / "config.json")
    names = sorted(state)
    halves = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for shard, keys in halves.items():
        save_file({k: state[k].contiguous() for k in keys}, str(sharded / shard))
    weight_map = {k: shard for shard, keys in halves.items() for k in keys}
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    assert_close(our_embeddings(vop.load_clip(sharded), *tiny_inputs), reference)


@pytest.mark.parametrize("name", ["tiny", "ViT-B-32", "ViT-L-14"])
def test_hf_config_mapping_round_trips(name):
    cfg = get_config(name)
    assert config_from_hf(config_to_hf(cfg), name="x", origin="test") == cfg
