"""Hostile configs (issue 28): every shape-determining number read from a file is checked against
the architecture's limits and a size estimate before anything is built.

Each case writes a small real file (safetensors with ``vop_clip_config`` metadata, a Hugging Face
folder, a TorchScript archive, an adapter folder, a YAML recipe) and loads it through the real
loaders; the memory cases measure the peak resident size of a fresh process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from vop.backbone.clip import CONFIGS, CLIPConfig, build_clip, get_config, parameter_count, state_shapes
from vop.backbone.formats.torchscript import TorchScriptError, read_torchscript_state
from vop.backbone.loading import CONFIG_METADATA_KEY, CheckpointError, load_clip, save_clip
from vop.cli import main

HERE = Path(__file__).resolve().parent
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.script builds the archives


def tiny_dict(**changes) -> dict:
    """The tiny config as a dict, with ``changes`` as ``"vision.width": 4096`` style keys."""
    d = get_config("tiny").to_dict()
    for key, value in changes.items():
        node, _, leaf = key.rpartition(".")
        (d[node] if node else d)[leaf] = value
    return d


def config_file(path: Path, config) -> Path:
    """A safetensors file holding one small tensor and ``config`` as its vop_clip_config."""
    text = config if isinstance(config, str) else json.dumps(config)
    save_file({"x": torch.zeros(1)}, str(path), metadata={CONFIG_METADATA_KEY: text})
    return path


def one_line(capsys, code: int, command: str) -> str:
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"vop {command}: error: ") and err.count("\n") == 1, (code, err)
    return err


# --------------------------------------------------------------------------- the estimate itself


def test_parameter_count_and_shapes_match_the_built_model():
    for name, cfg in CONFIGS.items():
        shapes = state_shapes(cfg)  # meta device: nothing allocated, also for ViT-L-14
        assert parameter_count(cfg) == sum(torch.Size(s).numel() for s in shapes.values()), name
        if name.startswith("tiny"):
            built = build_clip(cfg).state_dict()
            assert shapes == {k: tuple(v.shape) for k, v in built.items()}, name
    assert parameter_count(get_config("ViT-B-32")) == 151_277_313  # OpenAI's published count


# --------------------------------------------------------------------------- architecture configs


@pytest.mark.parametrize("changes, pattern", [
    ({"vision.patch_size": 0}, r"vision.patch_size is '0'; expected an integer from 1 to 32"),
    ({"vision.width": -64}, r"vision.width is '-64'"),
    ({"vision.width": "64"}, r"vision.width is '64'; expected an integer"),
    ({"text.width": True}, r"text.width is 'True'"),
    ({"vision.width": 64.0}, r"vision.width is '64.0'"),
    ({"vision.heads": 3}, r"vision.heads 3 does not divide vision.width 64"),
    ({"text.heads": 0}, r"text.heads is '0'"),
    ({"text.context_length": 10**9}, r"text.context_length is '1000000000'; expected an integer from 2 to 4096"),
    ({"vision.image_size": 30}, r"vision.image_size 30 is not a multiple of vision.patch_size 8"),
    ({"vision.image_size": 10**6}, r"vision.image_size is '1000000'"),
    ({"text.vocab_size": 100}, r"text.vocab_size is '100'; expected an integer from 49408"),
    ({"vision.layers": 10**6}, r"vision.layers is '1000000'"),
    ({"embed_dim": None}, r"embed_dim is 'None'"),
    ({"quick_gelu": "yes"}, r"quick_gelu is 'yes'"),
    ({"name": ["x"]}, r"name must be a string"),
    ({"vision.extra": 1}, r"vision has unknown keys \['extra'\]"),
    ({"text": [1, 2]}, r"text must be an object"),
    ({"vision.width": 4096, "vision.heads": 16, "vision.layers": 24, "text.width": 4096, "text.heads": 16,
      "text.layers": 24}, r"9,870,069,761 parameters \(36.8 GiB in float32\), over vop's ceiling of 3,000,000,000"),
])
def test_metadata_config_is_validated(tmp_path, changes, pattern):
    path = config_file(tmp_path / "m.safetensors", tiny_dict(**changes))
    with pytest.raises(CheckpointError, match=rf"m.safetensors: metadata key 'vop_clip_config' .*{pattern}"):
        load_clip(path)


def test_metadata_config_missing_key_and_bad_json(tmp_path):
    d = tiny_dict()
    del d["vision"]["patch_size"]
    with pytest.raises(CheckpointError, match=r"vision lacks \['patch_size'\]"):
        load_clip(config_file(tmp_path / "a.safetensors", d))
    with pytest.raises(CheckpointError, match=r"b.safetensors: metadata key .* not a valid CLIP config"):
        load_clip(config_file(tmp_path / "b.safetensors", "[" * 100_000))
    with pytest.raises(ValueError, match=r"vision.patch_size is '0'"):
        CLIPConfig.from_dict(tiny_dict(**{"vision.patch_size": 0}))
    with pytest.raises(ValueError, match=r"text.heads 3 does not divide"):
        build_clip(CLIPConfig("x", 32, get_config("tiny").vision, get_config("tiny").text.__class__(32, 2, 3)))


def hf_folder(path: Path, text: dict | None = None, vision: dict | None = None, raw: str | None = None) -> Path:
    """A Hugging Face CLIPModel folder for the tiny architecture with ``text``/``vision`` changes."""
    from vop.backbone.formats.hf import config_to_hf

    path.mkdir()
    config = config_to_hf(get_config("tiny"))
    config["text_config"].update(text or {})
    config["vision_config"].update(vision or {})
    (path / "config.json").write_text(raw if raw is not None else json.dumps({**config, "model_type": "clip"}))
    save_file({"x": torch.zeros(1)}, str(path / "model.safetensors"))
    return path


@pytest.mark.parametrize("text, vision, pattern", [
    ({}, {"patch_size": 0}, r"vision_config.patch_size is '0'"),
    ({"hidden_size": "32", "intermediate_size": "128"}, {}, r"text_config.hidden_size is '32'; expected a int"),
    ({"num_attention_heads": 5}, {}, r"text_config.num_attention_heads 5 does not divide text_config.hidden_size"),
    ({"max_position_embeddings": 10**9}, {}, r"text_config.max_position_embeddings is '1000000000'"),
    ({}, {"image_size": 33}, r"vision_config.image_size 33 is not a multiple of vision_config.patch_size 8"),
    ({}, {"hidden_size": 4096, "intermediate_size": 16384, "num_hidden_layers": 200, "num_attention_heads": 16},
     r"the architecture has [\d,]+ parameters .* over vop's ceiling"),
    ({"layer_norm_eps": "x"}, {}, r"text_config.layer_norm_eps is 'x'; expected a float"),
])
def test_hf_config_json_is_validated(tmp_path, text, vision, pattern):
    folder = hf_folder(tmp_path / "hf", text, vision)
    with pytest.raises(CheckpointError, match=rf"hf/config.json: {pattern}"):
        load_clip(folder)


def test_hf_config_json_structure(tmp_path):
    with pytest.raises(CheckpointError, match=r"a/config.json: not valid JSON"):
        load_clip(hf_folder(tmp_path / "a", raw='{"text_config": ' * 50_000))
    with pytest.raises(CheckpointError, match=r"b/config.json: text_config must be an object"):
        load_clip(hf_folder(tmp_path / "b", raw='{"text_config": [1]}'))
    with pytest.raises(CheckpointError, match=r"c/config.json: expected a JSON object"):
        load_clip(hf_folder(tmp_path / "c", raw="[]"))


def test_cli_refuses_a_hostile_architecture_in_one_line(tmp_path, capsys):
    path = config_file(tmp_path / "big.safetensors", tiny_dict(**{"text.context_length": 10**9}))
    (tmp_path / "videos").mkdir()
    code = main(["index", str(tmp_path / "videos"), "--backbone", str(path), "--out", str(tmp_path / "idx"),
                 "--quiet"])
    err = one_line(capsys, code, "index")
    assert "big.safetensors" in err and "text.context_length is '1000000000'" in err


def test_sparse_token_table_cannot_ask_for_a_wider_table(tmp_path, tiny_clip):
    path = save_clip(tiny_clip, tmp_path / "t.safetensors", keep_tokens=[0, 1, 49407])
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    state = load_file(str(path))
    state["token_embedding.weight.values"] = torch.zeros(3, 100_000)  # a 49,408 x 100,000 table when expanded
    save_file(state, str(path), metadata=meta)
    with pytest.raises(CheckpointError, match=r"values of shape \(3, 100000\) do not fit the token embedding"):
        load_clip(path)


# --------------------------------------------------------------------------- refused before allocation

RSS_SCRIPT = textwrap.dedent("""
    import resource, sys
    from vop.backbone.clip import get_config, state_shapes
    from vop.backbone.loading import CheckpointError, load_clip
    peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux: KiB)
    state_shapes(get_config("tiny"))  # torch's one-time setup of the meta device, not the case's cost
    for path in sys.argv[1:]:
        before = peak()
        try:
            load_clip(path)
            print("LOADED", path)
        except CheckpointError as e:
            print("REFUSED", round(peak() - before, 1), str(e))
""")


def test_refusal_happens_before_the_model_is_allocated(tmp_path):
    """A 380-byte file declaring width 4096 x 24 layers (the issue's case: 3.2 GB resident before its
    error) is refused by the parameter ceiling; one declaring width 512 x 12 layers (under the
    ceiling, 300 MB in float32) by the shape check, which runs on the meta device; a ViT-B-32.pt
    whose tensors are views of one stored number by the storage check. The peak resident size of
    the loading process grows by less than 40 MiB in each."""
    huge = tiny_dict(**{f"{t}.{k}": v for t in ("vision", "text") for k, v in
                        (("width", 4096), ("layers", 24), ("heads", 16))})
    mid = tiny_dict(**{f"{t}.{k}": v for t in ("vision", "text") for k, v in
                       (("width", 512), ("layers", 12), ("heads", 8))})
    assert parameter_count(CLIPConfig.from_dict(mid)) * 4 > 290 * 2**20  # what building it would take
    files = [config_file(tmp_path / "huge.safetensors", huge), config_file(tmp_path / "mid.safetensors", mid)]
    assert files[0].stat().st_size < 400
    # every tensor of ViT-B/32 (600 MB in float32) as a stride-0 view of one stored zero: a 96 KB file
    torch.save({k: torch.zeros(()).expand(shape) for k, shape in state_shapes(get_config("ViT-B-32")).items()},
               tmp_path / "ViT-B-32.pt")
    files.append(tmp_path / "ViT-B-32.pt")
    assert files[2].stat().st_size < 200_000
    proc = subprocess.run([sys.executable, "-c", RSS_SCRIPT, *map(str, files)], capture_output=True, text=True,
                          timeout=300, check=False)
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0 and len(lines) == 3, proc.stderr[-2000:]
    for line, why in zip(lines, ("over vop's ceiling", "does not fit CLIP config",
                                 "its tensors hold 1,208 bytes but stand for 605,109,252 bytes in float32")):
        verdict, growth, message = line.split(" ", 2)
        assert verdict == "REFUSED" and why in message, line
        assert float(growth) < 40, line


# --------------------------------------------------------------------------- TorchScript state


def _uni(text: str) -> bytes:
    return b"X" + len(text).to_bytes(4, "little") + text.encode()


def _archive_with(tmp_path: Path, data_pkl: bytes) -> Path:
    """A real TorchScript archive (a scripted Linear) whose data.pkl is replaced by ``data_pkl``."""
    import warnings

    src = tmp_path / "src.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(torch.nn.Linear(4, 4)).save(str(src))
    out = tmp_path / "evil.pt"
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(out, "w") as b:
        for item in a.infolist():
            b.writestr(item, data_pkl if item.filename.endswith("/data.pkl") else a.read(item))
    return out


def _tensor(size: bytes, stride: bytes, numel: int) -> bytes:
    """Pickle ops rebuilding a float tensor of storage ``"0"`` (``numel`` elements)."""
    return (b"ctorch._utils\n_rebuild_tensor_v2\n((" + _uni("storage") + b"ctorch\nFloatStorage\n" + _uni("0")
            + _uni("cpu") + b"K" + bytes([numel]) + b"tQK\x00(" + size + b"t(" + stride
            + b"t\x89ccollections\nOrderedDict\n)RtR")


def test_torchscript_build_cannot_reshape_a_checked_tensor(tmp_path):
    """BUILD on an empty tensor calls ``Tensor.__setstate__`` -> ``set_``: a 10^12-element stride-0
    view of one float, past every check ``_rebuild_tensor`` made. Refused by name."""
    with zipfile.ZipFile(_archive_with(tmp_path, b"")) as z:
        numel = z.getinfo(next(n for n in z.namelist() if n.endswith("/data/0"))).file_size // 4
    big = b"J" + (10**6).to_bytes(4, "little")
    evil = (b"\x80\x02c__torch__\nM\n)\x81}" + _uni("weight") + _tensor(b"K\x00", b"K\x01", numel)  # empty tensor
            + b"(" + _tensor(b"K\x01", b"K\x01", numel) + b"K\x00(" + big + big + b"t(K\x00K\x00ttb"  # BUILD
            + b"sb.")
    with pytest.raises(TorchScriptError, match=r"evil.pt: data.pkl sets the state of a Tensor \(BUILD\).*refused"):
        read_torchscript_state(_archive_with(tmp_path, evil))
    # the same archive without the BUILD loads: the refusal is the BUILD's
    plain = b"\x80\x02c__torch__\nM\n)\x81}" + _uni("weight") + _tensor(b"K\x01", b"K\x01", numel) + b"sb."
    assert read_torchscript_state(_archive_with(tmp_path, plain))["weight"].shape == (1,)


def test_every_collected_tensor_is_checked_against_its_storage(tmp_path):
    """The last check, whatever path a tensor took: a stride-0 view of 10^12 elements is refused."""
    from vop.backbone.formats import torchscript

    with zipfile.ZipFile(_archive_with(tmp_path, b"")) as z:
        archive = torchscript._Archive(tmp_path / "x.pt", z)
        module = type("M", (torchscript.ScriptObject,), {"qualname": "__torch__.M"})()
        module.state = {"weight": torch.zeros(1).as_strided((10**6, 10**6), (0, 0))}
        with pytest.raises(TorchScriptError, match=r"x.pt: weight: tensor of size \(1000000, 1000000\) has more "
                                                   r"elements than its storage"):
            torchscript._collect(module, "", archive, {}, depth=0)
        module.state = {"weight": torch.zeros(4)[1:]}  # an ordinary view with an offset passes
        out = {}
        torchscript._collect(module, "", archive, out, depth=0)
        assert out["weight"].shape == (3,)


# --------------------------------------------------------------------------- method configs


def _adapter(tmp_path: Path, clip, method: str, **changes) -> Path:
    """A real 2-frame adapter folder of ``method`` whose adapter.json gets ``changes`` (``frames``,
    or a key of its components)."""
    from vop.adapter import save_adapter
    from vop.model import build_model

    folder = save_adapter(build_model(clip, method, frames=2), tmp_path / method)
    meta = json.loads((folder / "adapter.json").read_text())
    for key, value in changes.items():
        if key == "frames":
            meta["frames"] = value
        else:
            for c in meta["method_config"]["components"]:
                if key in c:
                    c[key] = value
    (folder / "adapter.json").write_text(json.dumps(meta))
    return folder


@pytest.mark.parametrize("method, changes, pattern", [
    ("vop-c", {"generated_length": 100_000}, r"generated_length is '100000'; expected an integer from 0 to 1024"),
    ("vop", {"text_length": "8"}, r"text_length is '8'; expected an integer"),
    ("vop", {"visual_length": -1}, r"visual_length is '-1'"),
    ("vop", {"text_placement": 3}, r"text_placement is '3'; expected a string"),
    ("vop-f", {"frame_position": 1}, r"frame_position is '1'; expected true or false"),
    ("vop-f", {"shallow_layers": "2"}, r"shallow_layers is '2'; expected a finite number"),
    ("adapter-attn", {"hidden": 0}, r"hidden is '0'; expected an integer from 1"),
    ("vop-c", {"cmm": "gru"}, r"unknown cmm 'gru'"),
    ("vop", {"text_placement": "modelscope", "text_length": 76}, r"leaves no word slots in the backbone's 77"),
])
def test_adapter_method_values_are_checked(tmp_path, tiny_clip, method, changes, pattern):
    from vop.adapter import AdapterError, load_adapter

    with pytest.raises(AdapterError, match=rf"adapter.json: cannot rebuild method '{method}': .*{pattern}"):
        load_adapter(_adapter(tmp_path, tiny_clip, method, **changes), tiny_clip)


def test_values_in_range_whose_product_is_not(tmp_path):
    """``position_length`` 1024 x 1024 frames on a 12-layer backbone: each value is within its
    bound, the position table is 805 M parameters; refused from the exact count on the meta device."""
    from vop.adapter import AdapterError, load_adapter
    from vop.model import build_model, method_shapes

    clip = build_clip("tiny-12", seed=0)
    with pytest.raises(ValueError, match=r"would add 805,\d{3},\d{3} parameters .* ceiling is 500,000,000"):
        build_model(clip, "vop-p", frames=1024, overrides={"position_length": 1024})
    folder = _adapter(tmp_path, clip, "vop-p", frames=1024, position_length=1024)
    with pytest.raises(AdapterError, match=r"would add 805,\d{3},\d{3} parameters"):
        load_adapter(folder, clip)
    # vop-c's generated prompts: the count is the real one (ViT-B/32: 14.3 M, as in DESIGN)
    shapes = method_shapes(get_config("ViT-B-32"), "vop-c", 12)
    assert sum(torch.Size(s).numel() for s in shapes.values()) == 14_257_152
    with pytest.raises(ValueError, match=r"frames is '100000'; expected an integer from 1 to 1024"):
        build_model(clip, "vop", frames=100_000)


ADAPTER_RSS_SCRIPT = textwrap.dedent("""
    import resource, sys
    from vop.adapter import AdapterError, load_adapter
    from vop.backbone.clip import build_clip
    from vop.model import build_model
    peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    clip = build_clip("tiny-12", seed=0)
    build_model(clip, "vop-p", frames=2)  # one-time setup (meta device, first model)
    before = peak()
    try:
        load_adapter(sys.argv[1], clip)
        print("LOADED")
    except AdapterError as e:
        print("REFUSED", round(peak() - before, 1), str(e))
""")


def test_adapter_refused_against_its_file_before_the_model_is_built(tmp_path):
    """frames 1024 x position_length 512 (402 M parameters, 1.5 GiB, under the ceiling) while
    adapter.safetensors holds the 2-frame tensors: the header's shapes are compared with the
    method's (meta device) first, so the load stops with the peak resident size grown < 40 MiB."""
    clip = build_clip("tiny-12", seed=0)
    folder = _adapter(tmp_path, clip, "vop-p", frames=1024, position_length=512)
    proc = subprocess.run([sys.executable, "-c", ADAPTER_RSS_SCRIPT, str(folder)], capture_output=True, text=True,
                          timeout=300, check=False)
    verdict, growth, message = proc.stdout.strip().split(" ", 2)
    assert verdict == "REFUSED", proc.stdout + proc.stderr[-2000:]
    assert "adapter.safetensors: prompts.visual.position has shape (12, 2, 4, 64), the method needs " \
           "(12, 1024, 512, 64)" in message
    assert float(growth) < 40, message


def test_save_adapter_never_writes_what_loaders_refuse(tmp_path, tiny_clip):
    from vop.adapter import AdapterError, save_adapter
    from vop.model import build_model

    model = build_model(tiny_clip, "vop", frames=2)
    with torch.no_grad():
        model.prompts["text"].tokens[0, 0, 0] = float("nan")
    with pytest.raises(AdapterError, match=r"adapter.safetensors \(not written\): tensor prompts.text.tokens holds 1 "
                                           r"non-finite"):
        save_adapter(model, tmp_path / "a")
    assert not (tmp_path / "a").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(AdapterError, match=r"file: exists and is not a folder"):
        save_adapter(build_model(tiny_clip, "vop", frames=2), tmp_path / "file")


# --------------------------------------------------------------------------- vop adapter inspect


@pytest.mark.parametrize("edit, pattern", [
    (lambda m: m.update(parameters={"trainable": "many", "total": 1}), r"parameters.trainable is 'many'"),
    (lambda m: m.update(parameters=[1]), r"parameters must be an object"),
    (lambda m: m["parameters"].update(breakdown={"text": -1}), r"parameters.breakdown.text is '-1'"),
    (lambda m: m.update(method_config={}), r"method_config.components must be a list of objects"),
    (lambda m: m.update(method_config={"components": [1]}), r"method_config.components must be a list"),
    (lambda m: m.update(whole_model="no"), r"whole_model must be true or false"),
    (lambda m: m.update(vop_version=5), r"vop_version must be a string"),
    (lambda m: m.pop("backbone"), r"backbone must be an object"),
    (lambda m: m.update(extra=[]), r"extra must be an object"),
])
def test_inspect_mistyped_fields_are_one_line(tmp_path, tiny_clip, capsys, edit, pattern):
    import re

    folder = _adapter(tmp_path, tiny_clip, "vop")
    meta = json.loads((folder / "adapter.json").read_text())
    edit(meta)
    (folder / "adapter.json").write_text(json.dumps(meta))
    err = one_line(capsys, main(["adapter", "inspect", str(folder)]), "adapter inspect")
    assert "adapter.json: " in err and re.search(pattern, err), err


def test_inspect_missing_optional_fields_and_garbage_weights(tmp_path, tiny_clip, capsys):
    folder = _adapter(tmp_path, tiny_clip, "vop")
    meta = json.loads((folder / "adapter.json").read_text())
    for key in ("parameters", "vop_version", "extra", "whole_model"):
        del meta[key]
    (folder / "adapter.json").write_text(json.dumps(meta))
    assert main(["adapter", "inspect", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "parameters  not recorded" in out and "vop         not recorded" in out
    for garbage in (b"\x13\x00\x00\x00\x00\x00\x00\x00{not json at all", b"", b"\xff" * 8 + b"{}"):
        (folder / "adapter.safetensors").write_bytes(garbage)
        err = one_line(capsys, main(["adapter", "inspect", str(folder)]), "adapter inspect")
        assert "adapter.safetensors: not a readable safetensors file" in err
    (folder / "adapter.safetensors").unlink()
    (folder / "adapter.safetensors").mkdir()
    err = one_line(capsys, main(["adapter", "inspect", str(folder)]), "adapter inspect")
    assert "adapter.safetensors: not found" in err


# --------------------------------------------------------------------------- YAML recipes


BOMB = "".join(f"{n}: &{n} [{', '.join([f'*{p}'] * 10) if p else ', '.join(['x'] * 10)}]\n"
               for p, n in zip(["", "a", "b", "c", "d", "e"], "abcdef")) + "model: {overrides: {x: *f}}\n"


def test_yaml_alias_bomb_is_refused_in_one_line(tmp_path, capsys):
    """Six levels of ten aliases: 10^6 leaves once the recipe is copied (a few hundred bytes)."""
    recipe = tmp_path / "bomb.yaml"
    recipe.write_text(BOMB)
    assert recipe.stat().st_size < 460
    err = one_line(capsys, main(["train", str(recipe)]), "train")
    assert "bomb.yaml: not valid YAML at line 2, column 8: aliases (*a) are not accepted" in err
    big = tmp_path / "big.yaml"  # no alias, but more values than a recipe holds
    big.write_text("name: x\nlist: [" + ", ".join(["1"] * 100_001) + "]\n")
    err = one_line(capsys, main(["train", str(big)]), "train")
    assert "big.yaml: not valid YAML at line 2" in err and "more than 100,000 values" in err


@pytest.mark.parametrize("recipe, pattern", [
    ("model: {method: vop, overrides: {nope: 3}}", r"model: override 'nope' does not apply to method 'vop'"),
    ("model: {method: vop-c, overrides: {generated_length: 100000}}",
     r"model: component 'context': generated_length is '100000'; expected an integer from 0 to 1024"),
    ("model: {method: vop, overrides: {text_length: .inf}}", r"text_length is 'inf'"),
    ("model: {method: vop-f, overrides: {shallow_layers: .nan}}", r"shallow_layers is 'nan'; expected a finite"),
    ("model: {method: nope}", r"model: unknown method 'nope'"),
    ("model: {method: vop, frames: 100000}", r"model: frames is '100000'; expected an integer from 1 to 1024"),
])
def test_recipe_method_errors_are_one_line(tmp_path, capsys, recipe, pattern):
    import re

    path = tmp_path / "r.yaml"
    path.write_text(recipe + "\n")
    err = one_line(capsys, main(["train", str(path)]), "train")
    assert "r.yaml: " in err and re.search(pattern, err), err
    err = one_line(capsys, main(["train", str(HERE.parent / "configs" / "msrvtt-9k" / "vop.yaml"), "--set",
                                 "model.overrides.nope=1"]), "train")
    assert "model: override 'nope' does not apply" in err


# --------------------------------------------------------------------------- vop adapter import modelscope

MS_HP = {"vp_token_num": 8, "tp_prefix_token_num": 4, "tp_suffix_token_num": 4, "num_frames": 4, "input_res": 32,
         "pooling_type": "avg"}


def ms_folder(root: Path, hp: dict | None = None, text_prompts=None) -> Path:
    """A ModelScope VoP folder (released key layout) on the tiny config, with its backbone tiny.pt."""
    clip = build_clip("tiny", seed=0)
    root.mkdir(parents=True)
    torch.save(clip.state_dict(), root / "tiny.pt")
    (root / "configuration.json").write_text(json.dumps({"hyperparam": {**MS_HP, **(hp or {})}}))
    state = {f"clip.{k}": v for k, v in clip.state_dict().items()}
    state["visual_prompt_learner.visual_prompts"] = torch.randn(2, 1, 8, 64)
    state["text_prompt_learner.text_prompts"] = torch.randn(2, 8, 32) if text_prompts is None else text_prompts
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, root / "VoP_msrvtt9k.pth")
    return root


def ms_import(capsys, folder: Path, out: Path, backbone: Path | None = None) -> str:
    extra = ["--backbone", str(backbone if backbone is not None else folder / "tiny.pt")]
    err = one_line(capsys, main(["adapter", "import", "modelscope", str(folder), "--out", str(out), *extra]),
                   "adapter import")
    assert not (out / "adapter.json").exists() and not (out / "adapter.safetensors").exists()
    return err


@pytest.mark.parametrize("hp, pattern", [
    ({"num_frames": 10**9}, (r"configuration.json: hyperparam num_frames is '1000000000'; expected an integer from 1 "
                            r"to 1024")),
    ({"vp_token_num": 10**6}, (r"configuration.json: hyperparam vp_token_num is '1000000'; expected an integer "
                              r"from 0 to 1024")),
    ({"input_res": 10**7}, r"configuration.json: hyperparam input_res is '10000000'"),
    ({"num_frames": True}, r"configuration.json: hyperparam num_frames is 'True'"),
])
def test_modelscope_hyperparameters_are_bounded(tmp_path, capsys, hp, pattern):
    import re

    err = ms_import(capsys, ms_folder(tmp_path / "m", hp), tmp_path / "out")
    assert re.search(pattern, err), err


def test_modelscope_nan_prompts_are_refused_naming_the_checkpoint(tmp_path, capsys):
    prompts = torch.randn(2, 8, 32)
    prompts[1, 2, 3] = float("nan")
    err = ms_import(capsys, ms_folder(tmp_path / "m", text_prompts=prompts), tmp_path / "out")
    assert "VoP_msrvtt9k.pth: module.text_prompt_learner.text_prompts holds 1 non-finite values" in err


def test_modelscope_files_of_the_wrong_kind_are_one_line(tmp_path, capsys):
    import warnings

    folder = ms_folder(tmp_path / "m")
    (tmp_path / "afile").write_text("x")  # --out an existing file
    assert "afile: exists and is not a folder" in ms_import(capsys, folder, tmp_path / "afile")
    (folder / "configuration.json").write_text('{"hyperparam": ' * 100_000)  # nested too deep for json
    assert "configuration.json: not valid JSON" in ms_import(capsys, folder, tmp_path / "out")
    (folder / "configuration.json").unlink()
    (folder / "configuration.json").mkdir()  # a directory where a file is expected
    assert "configuration.json: not found" in ms_import(capsys, folder, tmp_path / "out")
    folder = ms_folder(tmp_path / "d")
    (folder / "VoP_msrvtt9k.pth").unlink()
    (folder / "VoP_msrvtt9k.pth").mkdir()
    assert "VoP_msrvtt9k.pth: a directory, not a checkpoint file" in ms_import(capsys, folder, tmp_path / "out")
    # a TorchScript backbone: one not named after a config, and one whose class runs code at load
    folder = ms_folder(tmp_path / "t")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(torch.nn.Linear(2, 2)).save(str(tmp_path / "scripted.pt"))
    err = ms_import(capsys, folder, tmp_path / "out", backbone=tmp_path / "scripted.pt")
    assert "scripted.pt: cannot tell the architecture" in err
    sys.path.insert(0, str(HERE))
    from test_hostile_checkpoints import Evil

    torch.jit.script(Evil(str(tmp_path / "marker"))).save(str(tmp_path / "ViT-B-32.pt"))
    err = ms_import(capsys, folder, tmp_path / "out", backbone=tmp_path / "ViT-B-32.pt")
    assert "ViT-B-32.pt: class __torch__" in err and "defines __setstate__" in err
    assert not (tmp_path / "marker").exists()
