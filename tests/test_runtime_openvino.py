"""The OpenVINO runtime (``vop.runtime``) against PyTorch fp32 on tiny random models with every
parameter perturbed: fp32 within 1e-4 on unit vectors for several methods (the ModelScope text
placement included), dynamic batch, captions of different lengths, the on-disk cache, int8
calibrated on real frames, bf16 (or its one-line refusal on a CPU without native bf16)."""

from __future__ import annotations

import pytest
import torch

from vop.backbone.clip import build_clip
from vop.backbone.quantize import PrecisionError
from vop.backbone.tokenizer import tokenize
from vop.model import build_model
from vop.runtime import prepare
from vop.runtime.calibration import Calibration
from vop.runtime.openvino import OpenVINOModel, cpu_capabilities
from vop.testing import perturb_every_parameter

FRAMES = 4
CAPTIONS = ["a dog", "a red ball rolls slowly to the left across a wooden table", "x",
            "two people talk in a kitchen while a kettle boils"]
MODELSCOPE = {"components": [{"type": "text", "text_length": 8, "text_placement": "modelscope",
                              "text_prefix_length": 4}, "visual"]}
CASES = {  # name -> (method, overrides)
    "zeroshot": ("zeroshot", None),
    "vop": ("vop", None),
    "vop-p": ("vop-p", None),
    "vop-f": ("vop-f", {"shallow_layers": 1}),
    "vop-fc": ("vop-fc", {"shallow_layers": 1}),
    "modelscope-text": ("vop", MODELSCOPE),
}

# the three text paths (plain CLIP, vop's prompts, the ModelScope placement); vop-p/-f/-fc share vop's text side
TEXT_CASES = ("zeroshot", "vop", "modelscope-text")


def perturbed_model(method, overrides, seed=0):
    """Backbone tensors + 0.02 N(0,1), LayerNorm weights and biases 1 +- / 0 + 0.25 N(0,1),
    prompts and other method tensors N(0, 0.5): no parameter keeps its default."""
    clip = build_clip("tiny", seed=seed)
    gen = perturb_every_parameter(clip, seed + 1)
    with torch.no_grad():
        model = build_model(clip, method, frames=FRAMES, overrides=overrides, seed=seed)
        for _, p in model.trainable_named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return model.eval()


def videos(batch, seed=0):
    return torch.randn(batch, FRAMES, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("openvino-cache")


@pytest.mark.parametrize("case", list(CASES))
def test_fp32_matches_pytorch(case, cache):
    model = perturbed_model(*CASES[case])
    ov = prepare(model, "openvino", "fp32", cache_dir=cache)
    assert isinstance(ov, OpenVINOModel) and ov.frames == FRAMES and ov.method == model.method
    with torch.no_grad():
        for batch in (1, 3):  # one exported graph, any batch
            v = videos(batch, seed=batch)
            ref = model.encode_video(v)
            got = ov.encode_video(v)
            assert got.shape == ref.shape
            assert (got - ref).abs().max().item() <= 1e-4
        if case not in TEXT_CASES:
            return
        for texts in (CAPTIONS[:1], CAPTIONS, CAPTIONS[2:]):  # different batch sizes and lengths
            tokens = tokenize(texts, context_length=model.context_length)
            ref = model.encode_text(tokens)
            got = ov.encode_text(tokens)
            assert (got - ref).abs().max().item() <= 1e-4, texts
    assert ov.encode_text(tokenize([], context_length=77)).shape == (0, model.clip.cfg.embed_dim)
    assert torch.allclose(got.norm(dim=-1), torch.ones(len(got)), atol=1e-5)


def test_cache_hit_on_second_build(tmp_path):
    model = perturbed_model("vop", None)
    first = prepare(model, "openvino", "fp32", cache_dir=tmp_path)
    first.prepare("video", "text")
    assert not first.timings["video"]["cached"] and not first.timings["text"]["cached"]
    entries = sorted(p.name for p in tmp_path.iterdir())
    again = prepare(model, "openvino", "fp32", cache_dir=tmp_path)
    again.prepare("video", "text")
    assert again.timings["video"]["cached"] and again.timings["text"]["cached"]
    assert sorted(p.name for p in tmp_path.iterdir()) == entries  # nothing rebuilt
    v = videos(2)
    assert torch.equal(first.encode_video(v), again.encode_video(v))
    # other method tensors (another adapter): another cache entry, never the old graph
    other = perturbed_model("vop", None, seed=5)
    other.clip.load_state_dict(model.clip.state_dict())  # same backbone, different prompts
    third = prepare(other, "openvino", "fp32", cache_dir=tmp_path)
    third.prepare("video")
    assert not third.timings["video"]["cached"]
    with torch.no_grad():
        assert (third.encode_video(v) - other.encode_video(v)).abs().max() <= 1e-4


def test_cache_folder_from_environment(tmp_path, monkeypatch):
    from vop.runtime.cache import cache_root

    monkeypatch.setenv("VOP_OPENVINO_CACHE", str(tmp_path / "ov"))
    assert cache_root() == tmp_path / "ov"
    monkeypatch.delenv("VOP_OPENVINO_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "vop" / "openvino"


def _real_calibration(real_data, frames=FRAMES, size=32):
    from vop.runtime.calibration import from_files

    files = sorted(p for p in (real_data / "videos").rglob("*") if p.suffix in (".mp4", ".avi", ".webm", ".mkv"))
    return from_files(files[:3], frames, size, what="tests/data videos"), files


def test_int8_close_to_fp32_per_video(real_data, tmp_path):
    from vop.runtime.calibration import from_files

    model = perturbed_model("vop-f", {"shallow_layers": 1})
    calib, files = _real_calibration(real_data)
    ov = prepare(model, "openvino", "int8", calibration=calib, cache_dir=tmp_path)
    held_out = from_files(files[3:] or files, FRAMES, 32).load()  # videos not used for calibration
    v = torch.stack(held_out)  # [N, F, 3, S, S]
    with torch.no_grad():
        ref = model.encode_video(v)
    got = ov.encode_video(v)
    cos = (got * ref).sum(-1)
    assert cos.min().item() >= 0.995, cos
    assert ov.timings["video"]["calibration"]["videos"] == calib.videos
    xml = (tmp_path / ov.timings["video"]["folder"].split("/")[-1] / "model.xml").read_text()
    assert "FakeQuantize" in xml or "FakeConvert" in xml  # the graph really is quantized
    # text under int8: int8 weights only (no user text to calibrate activations on)
    tokens = tokenize(CAPTIONS)
    with torch.no_grad():
        got, ref = ov.encode_text(tokens), model.encode_text(tokens)
    assert (got * ref).sum(-1).min() >= 0.995 and (got - ref).abs().max() > 1e-6
    assert ov.graph_precision("text") == "int8-weights"


def test_int8_videos_need_calibration_text_does_not(tmp_path):
    model = perturbed_model("vop", None)
    ov = prepare(model, "openvino", "int8", cache_dir=tmp_path)  # what vop search / serve build
    tokens = tokenize(CAPTIONS)
    with torch.no_grad():
        assert (ov.encode_text(tokens) * model.encode_text(tokens)).sum(-1).min() >= 0.995
    with pytest.raises(PrecisionError, match="calibrated on the collection's videos"):
        ov.encode_video(videos(1))


def test_bf16_where_native_else_one_line_refusal(tmp_path):
    model = perturbed_model("vop", None)
    if "BF16" not in cpu_capabilities():
        with pytest.raises(PrecisionError) as err:
            prepare(model, "openvino", "bf16", cache_dir=tmp_path)
        assert "\n" not in str(err.value) and "--precision int8" in str(err.value)
        return
    ov = prepare(model, "openvino", "bf16", cache_dir=tmp_path)
    v = videos(3)
    with torch.no_grad():
        ref = model.encode_video(v)
        got = ov.encode_video(v)
        cos = (got * ref).sum(-1)
        assert cos.min().item() >= 0.999, cos
        assert (got - ref).abs().max().item() > 1e-6  # it really ran in bf16, not fp32
        tokens = tokenize(CAPTIONS)
        assert ((ov.encode_text(tokens) * model.encode_text(tokens)).sum(-1)).min() >= 0.999


def test_unknown_runtime_and_bf16_on_torch():
    model = perturbed_model("zeroshot", None)
    with pytest.raises(PrecisionError, match="unknown runtime"):
        prepare(model, "tensorrt", "fp32")
    with pytest.raises(PrecisionError, match="--runtime openvino"):
        prepare(model, "torch", "bf16")


def test_calibration_is_not_loaded_when_cached(tmp_path, real_data):
    model = perturbed_model("vop", None)
    calib, _ = _real_calibration(real_data)
    loads = []

    def counting():
        loads.append(1)
        return calib.load()

    counted = Calibration(calib.id, calib.videos, calib.source, counting)
    prepare(model, "openvino", "int8", calibration=counted, cache_dir=tmp_path).prepare("video")
    prepare(model, "openvino", "int8", calibration=counted, cache_dir=tmp_path).prepare("video")
    assert loads == [1]


def test_int8_keep_fp32_parts_are_named_in_the_graph():
    """``INT8_SETTINGS['keep_fp32']`` parts resolve to the graph's own nodes: the patch embedding's
    convolution, each MLP's second matrix product (4 x width -> width), the output projection."""
    import openvino

    from vop.runtime import export
    from vop.runtime.openvino import ignored_scope

    model = perturbed_model("zeroshot", None)
    ov_model = openvino.convert_model(export.export_video(model))
    matmuls = [op for op in ov_model.get_ordered_ops() if op.get_type_name() == "MatMul"]
    assert ignored_scope(ov_model, ()) is None
    assert [n for n in ignored_scope(ov_model, ("patch",)).names] == [
        op.get_friendly_name() for op in ov_model.get_ordered_ops() if op.get_type_name() == "Convolution"]
    head = ignored_scope(ov_model, ("head",)).names
    assert head == [matmuls[-1].get_friendly_name()] and matmuls[-1].output(0).get_partial_shape()[-1].get_length() \
        == model.clip.cfg.embed_dim
    mlp = ignored_scope(ov_model, ("mlp_out",)).names
    assert len(mlp) == model.clip.cfg.vision.layers  # one per residual block


def test_one_layer_at_a_time_quantizes_only_that_block(real_data, tmp_path):
    """``only_layer`` (the int8 probe of benchmarks/runtime_quality.py): every matrix product of the
    image tower maps to its residual block, and the graph quantized with ``only_layer="block 1"``
    has its fake-quantize nodes on that block's inputs alone."""
    import openvino

    from vop.runtime import export
    from vop.runtime.openvino import QUANTIZED_TYPES, ignored_scope, op_layer

    model = perturbed_model("vop-f", {"shallow_layers": 1})
    program = export.export_video(model)
    layers = export.layer_names(program)
    ov_model = openvino.convert_model(program)
    quantized = [op for op in ov_model.get_ordered_ops() if op.get_type_name() in QUANTIZED_TYPES]
    per_block = {f"block {i}": [op.get_friendly_name() for op in quantized if op_layer(op, layers) == f"block {i}"]
                 for i in range(model.clip.cfg.vision.layers)}
    assert all(len(names) >= 3 for names in per_block.values()), per_block  # attention in, out; MLP in, out
    assert op_layer(next(op for op in quantized if op.get_type_name() == "Convolution"), layers) == "patch embedding"
    scope = ignored_scope(ov_model, (), "block 1", layers).names
    assert set(scope) == {op.get_friendly_name() for op in quantized} - set(per_block["block 1"])
    with pytest.raises(ValueError, match="block 9"):
        ignored_scope(ov_model, (), "block 9", layers)

    calib, _ = _real_calibration(real_data)
    ov = OpenVINOModel(model, "int8", calib, cache_dir=tmp_path, int8_settings={"only_layer": "block 1"})
    ov.prepare("video")
    q = openvino.Core().read_model(ov.timings["video"]["folder"] + "/model.xml")
    fed = {c.get_node().get_friendly_name() for op in q.get_ordered_ops() if op.get_type_name() == "FakeQuantize"
           for out in op.outputs() for c in out.get_target_inputs()}
    fed_quantized = {n for n in fed if n in {op.get_friendly_name() for op in quantized}}
    assert fed_quantized and fed_quantized <= set(per_block["block 1"]), fed_quantized
    with torch.no_grad():
        ref = model.encode_video(videos(2))
    assert (ov.encode_video(videos(2)) * ref).sum(-1).min() >= 0.995


def test_int8_without_vnni_warns_once(monkeypatch, caplog):
    """A CPU without VNNI runs OpenVINO int8, with one warning naming the faster alternatives."""
    import logging
    from pathlib import Path

    from vop.runtime import openvino as ov

    if Path("/proc/cpuinfo").is_file():  # Linux: the flags are read, a subset of INT8_FLAGS
        assert ov.cpu_int8_flags() <= set(ov.INT8_FLAGS)
    monkeypatch.setattr(ov, "_WARNED_NO_VNNI", False)
    monkeypatch.setattr(ov, "cpu_int8_flags", lambda: {"avx512_vnni"})
    with caplog.at_level(logging.WARNING, logger="vop.runtime"):
        assert ov.check_precision("int8") == "int8"
    assert not caplog.records
    monkeypatch.setattr(ov, "cpu_int8_flags", lambda: set())
    with caplog.at_level(logging.WARNING, logger="vop.runtime"):
        assert ov.check_precision("int8") == "int8"
        ov.check_precision("int8")
        ov.check_precision("fp32")
    assert len(caplog.records) == 1 and "no VNNI" in caplog.records[0].getMessage()
    assert "--runtime torch --precision int8" in caplog.records[0].getMessage()
    monkeypatch.setattr(ov, "cpu_int8_flags", lambda: None)  # unknown (not Linux): no warning
    monkeypatch.setattr(ov, "_WARNED_NO_VNNI", False)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vop.runtime"):
        ov.check_precision("int8")
    assert not caplog.records
