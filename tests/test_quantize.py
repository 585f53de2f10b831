"""--precision int8: the frozen backbone's linear layers in int8, prompts and trained tensors fp32."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from conftest import color_video, write_video
from torch import nn

from vop.backbone.clip import build_clip
from vop.backbone.loading import save_clip
from vop.backbone.quantize import (
    Int8Linear,
    PrecisionError,
    apply_precision,
    check_precision,
    int8_layers,
    precision_of,
    quantize_clip,
    quantize_model,
)
from vop.backbone.tokenizer import tokenize
from vop.cli import main
from vop.index.build import build_index
from vop.index.encoder import VideoEncoder
from vop.index.manifest import read_manifest
from vop.index.search import Searcher
from vop.model import build_model

FRAMES = 4


@pytest.fixture()
def inputs():
    g = torch.Generator().manual_seed(0)
    video = torch.randn(3, FRAMES, 3, 32, 32, generator=g)
    tokens = tokenize(["a red square moves left", "a dog", "two blue circles swap places"])
    return video, tokens


def _pair(clip, method: str):
    fp32 = build_model(clip, method, frames=FRAMES, seed=0)
    q = copy.deepcopy(fp32)
    quantize_model(q)
    return fp32, q


@torch.no_grad()
def _cosines(a, b, video, tokens):
    return (F.cosine_similarity(a.encode_video(video), b.encode_video(video)).min().item(),
            F.cosine_similarity(a.encode_text(tokens), b.encode_text(tokens)).min().item())


def test_every_transformer_linear_is_int8(tiny_clip):
    sha = tiny_clip.weights_sha256
    summary = quantize_clip(tiny_clip)
    blocks = [*tiny_clip.visual.transformer.resblocks, *tiny_clip.transformer.resblocks]
    assert len(summary["quantized"]) == 4 * len(blocks) and summary["kept_fp32"] == []
    for blk in blocks:
        for layer in (blk.attn.in_proj, blk.attn.out_proj, blk.mlp.c_fc, blk.mlp.c_proj):
            assert isinstance(layer, Int8Linear)
            assert layer.int8_weight().dtype == torch.int8
        assert not hasattr(blk.attn, "in_proj_weight")  # the fp32 q/k/v weight is gone, not shadowed
    assert not any(isinstance(m, nn.Linear) for blk in blocks for m in blk.modules())
    assert tiny_clip.logit_scale.dtype == torch.float32 and tiny_clip.visual.proj.dtype == torch.float32
    assert precision_of(tiny_clip) == "int8"
    assert tiny_clip.weights_sha256 == sha  # still names the fp32 weights it was built from
    assert quantize_clip(tiny_clip)["quantized"] == []  # idempotent
    with pytest.raises(PrecisionError, match="already int8"):
        apply_precision(build_model(tiny_clip, "zeroshot", frames=FRAMES), "fp32")


def test_int8_weights_match_fp32_per_channel(tiny_clip):
    w = tiny_clip.visual.transformer.resblocks[0].mlp.c_fc.weight.clone()
    layer = Int8Linear(w, None)
    back = layer.int8_weight().float() * layer.weight_scale[:, None]
    assert (back - w).abs().max() <= layer.weight_scale.max() / 2 + 1e-7
    assert layer.int8_weight().abs().amax(dim=1).eq(127).all()  # every row uses its full range


@pytest.mark.parametrize("method", ["zeroshot", "vop", "vop-f", "vop-c"])
def test_int8_embeddings_close_to_fp32(tiny_clip, inputs, method):
    fp32, q = _pair(tiny_clip, method)
    assert len(int8_layers(q)) == 16
    if method != "zeroshot":  # the prompts are untouched fp32 parameters
        pairs = list(zip(fp32.prompts.parameters(), q.prompts.parameters(), strict=True))
        assert pairs and all(b.dtype == torch.float32 and torch.equal(a, b) for a, b in pairs)
    video_cos, text_cos = _cosines(fp32, q, *inputs)
    # tiny model (width 64/32): the quantization noise is relatively larger than on ViT-B/32
    assert video_cos > 0.999 and text_cos > 0.995


def test_trained_backbone_tensors_stay_fp32(tiny_clip, inputs):
    partial, q = _pair(tiny_clip, "partial")
    summary = quantize_model(q)
    assert summary["quantized"] == []  # already done by _pair; the last blocks stayed fp32
    last = [q.clip.visual.transformer.resblocks[-1], q.clip.transformer.resblocks[-1]]
    for blk in last:
        assert isinstance(blk.mlp.c_fc, nn.Linear) and blk.attn.in_proj is None
    assert len(int8_layers(q)) == 16 - 8
    adapter, qa = _pair(tiny_clip, "adapter-attn")
    adapters = [blk.attn_adapter for blk in qa.clip.visual.transformer.resblocks]
    assert all(isinstance(m, nn.Linear) for a in adapters for m in a.modules() if "Linear" in type(m).__name__)
    for a, b in ((partial, q), (adapter, qa)):
        video_cos, text_cos = _cosines(a, b, *inputs)
        assert video_cos > 0.999 and text_cos > 0.995


def test_an_outlier_token_costs_precision_only_in_its_own_row():
    torch.manual_seed(0)
    lin = nn.Linear(64, 128)
    layer = Int8Linear(lin.weight, lin.bias)
    x = torch.randn(20, 64)
    loud = x.clone()
    loud[0] *= 1000  # one token with huge activations (real CLIP has such tokens)
    with torch.no_grad():
        ref = lin(x[1:])
        quiet_err = (layer(x)[1:] - ref).norm() / ref.norm()
        assert torch.equal(layer(loud)[1:], layer(x)[1:])  # per-token scales: the other rows are unchanged
        layer.per_token = False  # one range per call: the outlier coarsens every row
        tensor_err = (layer(loud)[1:] - ref).norm() / ref.norm()
    assert quiet_err < 0.02 and tensor_err > 10 * quiet_err


def test_precision_errors_are_clear():
    with pytest.raises(PrecisionError, match="unknown precision 'int4'"):
        check_precision("int4")
    with pytest.raises(PrecisionError, match="CPU only"):
        check_precision("int8", "cuda")
    assert check_precision("int8") == "int8"


def _videos(root, n=4):
    for i in range(n):
        write_video(root / f"v{i}.mp4", color_video(num_frames=8, size=32, seed=i))
    return root


def test_manifest_records_precision_and_mixed_search_works(tmp_path):
    torch.set_num_threads(1)
    videos = _videos(tmp_path / "videos")
    clip = build_clip("tiny", seed=0)
    fp32 = VideoEncoder.from_clip(copy.deepcopy(clip), frames=FRAMES, backbone_source="tiny")
    int8 = VideoEncoder.from_clip(copy.deepcopy(clip), frames=FRAMES, backbone_source="tiny", precision="int8")
    assert int8.precision == "int8" and int8.identity()["precision"] == "int8"
    build_index(videos, tmp_path / "i8", int8, progress=False)
    build_index(videos, tmp_path / "f32", fp32, progress=False)
    assert read_manifest(tmp_path / "i8").precision == "int8"
    assert read_manifest(tmp_path / "f32").precision == "fp32"
    hits = {}
    for index in ("i8", "f32"):
        for enc in (fp32, int8):  # every query precision against every index precision
            s = Searcher(tmp_path / index, encoder=enc, huge_pages=False)
            hits[index, enc.precision] = [h.path for h in s.search_like(videos / "v0.mp4", k=3)]
            s.close()
    assert len(set(map(tuple, hits.values()))) == 1  # same ranking whichever precision encodes
    (videos / "v1.mp4").unlink()
    _videos(tmp_path / "more", 1)
    (tmp_path / "more" / "v0.mp4").rename(videos / "new.mp4")
    build_index(videos, tmp_path / "i8", fp32, progress=False)  # kept int8 rows + new fp32 row
    assert read_manifest(tmp_path / "i8").precision == "mixed"


def test_cli_precision_flag(tmp_path, capsys):
    torch.set_num_threads(1)
    backbone = save_clip(build_clip("tiny", seed=0), tmp_path / "tiny.safetensors")
    videos = _videos(tmp_path / "videos", 3)
    index = tmp_path / "index"
    code = main(["index", str(videos), "--backbone", str(backbone), "--frames", str(FRAMES), "--out",
                 str(index), "--precision", "int8", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert read_manifest(index).precision == "int8"
    code = main(["search", str(index), "a red square", "-k", "2"])
    out, err = capsys.readouterr()
    assert code == 0 and "precision: query fp32, index int8" in err and len(out.strip().splitlines()) == 2
    code = main(["search", str(index), "a red square", "-k", "2", "--precision", "int8", "--json"])
    out, err = capsys.readouterr()
    assert code == 0 and json.loads(out)["precision"] == {"query": "int8", "index": "int8"}
    with pytest.raises(SystemExit):
        main(["search", str(index), "x", "--precision", "int4"])
    assert "invalid choice: 'int4'" in capsys.readouterr().err
    from vop.serve.service import load_service

    service = load_service([str(index)], precision="int8")  # what `vop serve --precision int8` runs
    (about,) = [c.describe() for c in service.collections.values()]
    assert about["precision"] == "int8" and about["index_precision"] == "int8"
    service.close()


def test_quality_benchmark_checks_fail_on_bad_numbers(monkeypatch):
    import importlib.util
    from pathlib import Path

    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    monkeypatch.syspath_prepend(str(bench))
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # the script sets it at import; keep the env as it was
    spec = importlib.util.spec_from_file_location("int8_quality", bench / "int8_quality.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    run = {"run": "vop-f-seed0", "t2v_r1_delta": -0.5, "t2v_r1_fp32": 5.67, "t2v_r1_int8": 5.17,
           "top10_overlap": 0.96, "video_cosine": {"min": 0.9995}}
    good = {"random": {"video_cosine": {"min": 0.9995}}, "demo": {"runs": [run], "best_trained": "vop-f-seed0"}}
    assert mod.checks(good) == []
    bad = copy.deepcopy(good)
    bad["random"]["video_cosine"]["min"] = 0.998
    bad["demo"]["runs"][0].update(t2v_r1_delta=-0.67, top10_overlap=0.94, video_cosine={"min": 0.99})
    assert len(mod.checks(bad)) == 4
