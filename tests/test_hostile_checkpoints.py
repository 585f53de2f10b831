"""Hostile checkpoints (issue 12): no code runs from a file, and every refusal is one clear line.

The TorchScript archives are built here exactly as OpenAI built ``ViT-B-32.pt``: a CLIP traced
with ``torch.jit.trace_module`` and written with ``torch.jit.save``.
"""


import json
import os
import pickle
import warnings
import zipfile

import pytest
import torch
from safetensors.torch import save_file

import vop
from vop.adapter import AdapterError, load_adapter, save_adapter
from vop.backbone.clip import build_clip
from vop.backbone.formats.torchscript import TorchScriptError, read_torchscript_state
from vop.backbone.loading import CheckpointError, load_clip, save_clip
from vop.cli import main
from vop.model import build_model

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")


def traced_archive(clip, path, dtype=torch.float32):
    """``torch.jit.save`` of a traced CLIP: the layout of OpenAI's release archives."""
    model = clip.to(dtype) if dtype != torch.float32 else clip
    images = torch.randn(1, 3, 32, 32, dtype=dtype)
    tokens = vop.tokenize(["a dog"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace_module(model, {"encode_image": images, "encode_text": tokens},
                                        check_trace=False)
    traced.save(str(path))
    return path


class Evil(torch.nn.Module):
    """A scripted module whose ``__setstate__`` creates a file when ``torch.jit.load`` restores it."""



    def __init__(self, marker: str):
        super().__init__()
        self.marker = marker
        self.weight = torch.nn.Parameter(torch.zeros(2))

    def forward(self, x):
        return x + self.weight

    @torch.jit.export
    def __getstate__(self):
        return (self.weight, self.marker, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, str, bool]):
        self.marker = state[1]
        self.training = state[2]
        # from_file(shared=True) creates the file: a visible side effect of running archive code
        self.weight = state[0] + 0 * torch.from_file(self.marker, True, 2)


def test_openai_layout_gives_the_same_tensors_as_jit_load(tmp_path):
    clip = build_clip("tiny", seed=0)
    for dtype in (torch.float32, torch.float16):  # OpenAI ships fp16
        archive = traced_archive(build_clip("tiny", seed=0), tmp_path / f"tiny-{dtype}.pt", dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reference = torch.jit.load(str(archive)).state_dict()  # what vop read before issue 12
        ours = read_torchscript_state(archive)
        assert ours.keys() == reference.keys()
        for k in reference:
            assert ours[k].dtype == dtype and torch.equal(ours[k], reference[k]), k
        loaded = load_clip(archive, config="tiny")
        assert loaded.source_format == "openai-torchscript"
        expected = {k: v.to(dtype).float() for k, v in clip.state_dict().items()}
        assert all(torch.equal(loaded.state_dict()[k], expected[k]) for k in expected)


def test_scripted_setstate_runs_under_jit_load_but_not_here(tmp_path):
    marker = tmp_path / "marker"
    archive = tmp_path / "ViT-B-32.pt"
    torch.jit.script(Evil(str(marker))).save(str(archive))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.load(str(archive))  # the attack is real: torch.jit.load runs the archive's code
    assert marker.exists()
    marker.unlink()

    with pytest.raises(TorchScriptError, match=r"class __torch__\.\S*Evil defines __setstate__.*refused"):
        load_clip(archive)
    assert not marker.exists()

    out = tmp_path / "idx"
    (tmp_path / "videos").mkdir()
    code = main(["index", str(tmp_path / "videos"), "--backbone", str(archive), "--out", str(out), "--quiet"])
    assert code == 2 and not marker.exists()


def _replace_data_pkl(archive, out, data: bytes):
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            dst.writestr(item, data if item.filename.endswith("/data.pkl") else src.read(item))
    return out


class _System:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_pickle_level_globals_are_refused_by_name(tmp_path):
    archive = traced_archive(build_clip("tiny", seed=0), tmp_path / "tiny.pt")
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_System(f"touch {marker}"), protocol=2)
    evil = _replace_data_pkl(archive, tmp_path / "evil.pt", payload)
    with pytest.raises(TorchScriptError, match=r"data.pkl names (posix|os)\.system.*refused"):
        load_clip(evil, config="tiny")
    assert not marker.exists()
    # a __torch__ object restored from a non-attribute state (what __setstate__ classes write)
    custom = b"\x80\x02c__torch__\nX\nq\x00)\x81" + _uni("a") + b"b."
    with pytest.raises(TorchScriptError, match=r"__torch__.X was saved with a custom state"):
        read_torchscript_state(_replace_data_pkl(archive, tmp_path / "custom.pt", custom))


def _uni(text: str) -> bytes:
    return b"X" + len(text).to_bytes(4, "little") + text.encode()


def test_storage_geometry_is_checked(tmp_path):
    archive = traced_archive(build_clip("tiny", seed=0), tmp_path / "tiny.pt")
    with zipfile.ZipFile(archive) as z:
        prefix = next(n for n in z.namelist() if n.endswith("/data.pkl"))[: -len("data.pkl")]
        numel = z.getinfo(prefix + "data/0").file_size // 4
    def tensor_pickle(size: bytes, stride: bytes) -> bytes:
        return (
            b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n((" + _uni("storage") + b"ctorch\nFloatStorage\n"
            + _uni("0") + _uni("cpu") + b"M" + numel.to_bytes(2, "little") + b"tQK\x00(" + size + b"t(" + stride
            + b"t\x89ccollections\nOrderedDict\n)RtR."
        )

    # 4096 elements over a smaller storage, and 2 elements strided past its end: both would read
    # memory outside the buffer (as_strided) or blow up on clone
    more = tensor_pickle(b"M\x00\x10", b"K\x01")
    with pytest.raises(TorchScriptError, match=r"size \(4096,\) has more elements than its storage"):
        read_torchscript_state(_replace_data_pkl(archive, tmp_path / "big.pt", more))
    past = tensor_pickle(b"K\x02", b"M" + numel.to_bytes(2, "little"))
    with pytest.raises(TorchScriptError, match=rf"reaches element {numel} of a storage of {numel}"):
        read_torchscript_state(_replace_data_pkl(archive, tmp_path / "past.pt", past))
    truncated = tmp_path / "cut.pt"
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(ValueError, match="cut.pt"):
        load_clip(truncated, config="tiny")


def test_pickled_object_checkpoint_is_one_line_without_weights_only_false(tmp_path, capsys):
    import argparse

    torch.save({"visual.proj": argparse.Namespace(run="code")}, tmp_path / "tiny.pt")
    with pytest.raises(CheckpointError) as err:
        load_clip(tmp_path / "tiny.pt")
    msg = str(err.value)
    assert "argparse.Namespace" in msg and "\n" not in msg and "weights_only=False" not in msg
    (tmp_path / "videos").mkdir()
    code = main(["index", str(tmp_path / "videos"), "--backbone", str(tmp_path / "tiny.pt"),
                 "--out", str(tmp_path / "idx"), "--quiet"])
    err_text = capsys.readouterr().err
    assert code == 2 and len(err_text.strip().splitlines()) == 1 and "weights_only=False" not in err_text


def test_garbage_files_are_one_line(tmp_path, tiny_clip):
    (tmp_path / "tiny.safetensors").write_bytes(b"\x13\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(CheckpointError, match=r"tiny.safetensors: not a readable safetensors file"):
        load_clip(tmp_path / "tiny.safetensors")
    (tmp_path / "tiny.pt").write_bytes(os.urandom(300))
    with pytest.raises(CheckpointError, match=r"tiny.pt: not a readable torch checkpoint"):
        load_clip(tmp_path / "tiny.pt")
    adapter = save_adapter(build_model(tiny_clip, "vop", frames=2), tmp_path / "adapter")
    (adapter / "adapter.safetensors").write_bytes(b"garbage" * 10)
    with pytest.raises(AdapterError, match=r"adapter.safetensors: not a readable safetensors file"):
        load_adapter(adapter, tiny_clip)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused(tmp_path, tiny_clip, bad):
    state = dict(tiny_clip.state_dict())
    state["visual.proj"] = state["visual.proj"].clone()
    state["visual.proj"][0, 0] = bad
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "tiny.safetensors"))
    with pytest.raises(CheckpointError, match=r"visual.proj holds 1 non-finite values"):
        load_clip(tmp_path / "tiny.safetensors")

    model = build_model(tiny_clip, "vop", frames=2)
    adapter = save_adapter(model, tmp_path / "adapter")
    from safetensors.torch import load_file

    tensors = load_file(str(adapter / "adapter.safetensors"))
    name = min(tensors)
    tensors[name] = tensors[name].clone().view(-1).index_fill(0, torch.tensor([0]), bad).view_as(tensors[name])
    save_file(tensors, str(adapter / "adapter.safetensors"))
    with pytest.raises(AdapterError, match=rf"{name} holds 1 non-finite values"):
        load_adapter(adapter, tiny_clip)


@pytest.mark.parametrize(
    "field,value,pattern",
    [
        ("frames", 1_000_000_000, r"frames is '1000000000'; expected an integer from 1 to 1024"),
        ("frames", "12", r"frames is '12'"),
        ("method_config", {"components": [{"type": "text", "length": 10**9}]}, r"length is '1000000000'"),
        ("backbone", None, r"backbone must be an object"),
    ],
)
def test_adapter_json_fields_are_bounded(tmp_path, tiny_clip, field, value, pattern):
    adapter = save_adapter(build_model(tiny_clip, "vop", frames=2), tmp_path / "adapter")
    meta = json.loads((adapter / "adapter.json").read_text())
    meta[field] = value
    (adapter / "adapter.json").write_text(json.dumps(meta))
    with pytest.raises(AdapterError, match=pattern):
        load_adapter(adapter, tiny_clip)


def test_deeply_nested_adapter_json(tmp_path, tiny_clip):
    adapter = save_adapter(build_model(tiny_clip, "vop", frames=2), tmp_path / "adapter")
    (adapter / "adapter.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(AdapterError, match="not valid JSON"):
        load_adapter(adapter, tiny_clip)


def test_save_clip_round_trip_still_loads(tmp_path, tiny_clip):
    path = save_clip(tiny_clip, tmp_path / "t.safetensors")
    assert load_clip(path).weights_sha256 == tiny_clip.weights_sha256


def test_module_without_class_code_is_read_by_attributes(tmp_path):
    """No code/ class found: every tensor attribute is taken (the strict key check then judges)."""
    archive = traced_archive(build_clip("tiny", seed=0), tmp_path / "tiny.pt")
    stripped = tmp_path / "nocode.pt"
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(stripped, "w") as dst:
        for item in src.infolist():
            if "/code/" in item.filename and item.filename.endswith(".py"):
                dst.writestr(item, b"# nothing here\n")
            else:
                dst.writestr(item, src.read(item))
    state = read_torchscript_state(stripped)
    assert state.keys() == build_clip("tiny", seed=0).state_dict().keys()


def test_cli_refuses_a_huge_frames_adapter_in_one_line(tmp_path, tiny_clip, capsys):
    backbone = save_clip(tiny_clip, tmp_path / "tiny.safetensors")
    adapter = save_adapter(build_model(tiny_clip, "vop", frames=2), tmp_path / "adapter")
    meta = json.loads((adapter / "adapter.json").read_text())
    meta["frames"] = 1_000_000_000
    (adapter / "adapter.json").write_text(json.dumps(meta))
    (tmp_path / "videos").mkdir()
    code = main(["index", str(tmp_path / "videos"), "--backbone", str(backbone), "--adapter", str(adapter),
                 "--out", str(tmp_path / "idx"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "adapter.json: frames is '1000000000'" in err
