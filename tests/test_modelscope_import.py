"""``vop adapter import modelscope``: the released ModelScope VoP checkpoints as vop adapters.

Equivalence is checked against the port itself (PyPI ``modelscope``, pinned in the test extra,
run by ``tests/modelscope_port.py`` in its own process) on random weights with every parameter
perturbed (``perturb_every_parameter``: with CLIP's unit LayerNorms, ``ln_1(ln_pre(p)) == ln_1(p)``
and a missing ``ln_pre`` on the first layer's visual prompts would pass unseen): a basic VoP
folder and a "bias" series folder, written in the released key layout by the port's own modules.
The inputs are a random video and a real decoded one, and captions up to past the port's
length-adaptive limit. The port reads any OpenAI-layout CLIP (it takes every size from the
tensors, with 64-wide heads), so the fast case uses a narrow CLIP with ViT-B/32's depth, patches,
image size and 77-token context (width 128, 2 heads); the ``slow`` case runs the real ViT-B/32
shapes. vop reads the same weights from a safetensors copy that carries the config. The error
tests use the tiny config.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import DATA

from vop.adapter import load_adapter, read_metadata
from vop.backbone import prompted
from vop.backbone.clip import CLIPConfig, TextCfg, VisionCfg, build_clip
from vop.backbone.loading import load_clip, save_clip
from vop.backbone.tokenizer import tokenize
from vop.cli import main
from vop.model import build_model
from vop.modelscope import ModelScopeError, convert_modelscope, trained_set
from vop.testing import perturb_every_parameter

HERE = Path(__file__).resolve().parent
VOP_HP = {"vp_token_num": 8, "tp_prefix_token_num": 4, "tp_suffix_token_num": 4, "num_frames": 12,
          "input_res": 224, "pooling_type": "avg", "seed": 24, "topk": 1, "video_sample_type": "uniform"}
SE_HP = {**VOP_HP, "tp_prefix_token_num": 0, "tp_suffix_token_num": 0}
CAPTIONS = [
    "a man is singing on stage",
    "Café owners argue about the naïve cat's tricks!",
    " ".join(["a"] * 62),   # EOT at 63: read-out on the last word slot before the suffix prompts
    " ".join(["a"] * 63),   # EOT at 64: read-out on the first suffix prompt
    " ".join(["a"] * 66),   # EOT at 67: read-out on the last suffix prompt
    " ".join(f"word{i}" for i in range(60)),  # longer than 69 slots: cut, read-out on EOT itself
]
TOL = 1e-5
REAL_VIDEO = DATA / "videos" / "mmaction2" / "test.mp4"
# ViT-B/32 narrowed to 128 wide (2 heads of 64, as the port derives them), and ViT-B/32 itself (slow)
ARCHES = [pytest.param("narrow", id="narrow"), pytest.param("ViT-B-32", id="ViT-B-32", marks=pytest.mark.slow)]
NARROW = CLIPConfig("narrow-b32", 64, VisionCfg(128, 12, 2, 32, 224), TextCfg(128, 12, 2))


def configuration(hp: dict) -> str:
    return json.dumps({"framework": "pytorch", "task": "vop-retrieval", "model": {"type": "vop-retrieval-model"},
                       "pipeline": {"type": "vop-video-text-retrieval"}, "hyperparam": hp}, indent=2)


def real_frames(size: int = 224, frames: int = 12) -> torch.Tensor:
    """A real video decoded and preprocessed by vop's own path: ``[1, F, 3, size, size]``."""
    from vop.data.decode import probe, read_frames
    from vop.data.sampling import sample_indices
    from vop.data.transforms import clip_preprocess

    raw = read_frames(REAL_VIDEO, sample_indices(probe(REAL_VIDEO).num_frames, frames))
    return clip_preprocess(raw, size=size)[None]


@pytest.fixture(scope="module", params=ARCHES)
def port_run(request, tmp_path_factory):
    """Random CLIP weights, every parameter perturbed (an fp16 ``ViT-B-32.pt`` state dict like
    OpenAI's, and the same weights as ``backbone.safetensors`` for vop), both model folders, and
    the port's outputs on a random video and a real one."""
    arch = request.param
    root = tmp_path_factory.mktemp("modelscope")
    clip = build_clip(NARROW if arch == "narrow" else arch, seed=0)
    gen = torch.Generator().manual_seed(0)
    perturb_every_parameter(clip, seed=0)
    with torch.no_grad():
        for p in clip.parameters():
            p.copy_(p.half())  # fp16 values, as OpenAI's release stores them
    clip._sha256 = None
    state = {k: v.half() for k, v in clip.state_dict().items()}
    state.update(input_resolution=torch.tensor(224), context_length=torch.tensor(77), vocab_size=torch.tensor(49408))
    torch.save(state, root / "ViT-B-32.pt")
    save_clip(clip, root / "backbone.safetensors")
    del clip, state
    for name, hp in (("vop", VOP_HP), ("cv_vit-b32_retrieval_vop_bias", SE_HP)):
        (root / name).mkdir()
        (root / name / "configuration.json").write_text(configuration(hp))
        os.symlink(root / "ViT-B-32.pt", root / name / "ViT-B-32.pt")
    video = torch.cat([torch.randn(1, 12, 3, 224, 224, generator=gen), real_frames()])  # [2, 12, 3, 224, 224]
    bpe = Path(prompted.__file__).with_name("bpe_simple_vocab_16e6.txt.gz")
    torch.save({"captions": CAPTIONS, "video": video, "bpe": str(bpe)}, root / "inputs.pt")
    proc = subprocess.run([sys.executable, str(HERE / "modelscope_port.py"), str(root)], check=False,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, video, torch.load(root / "port.pt", weights_only=True), arch


def _import(root: Path, src: Path, out: Path, arch: str, *extra: str) -> int:
    """The CLI; with ViT-B-32 shapes the backbone is the folder's own ViT-B-32.pt (the default)."""
    backbone = ["--backbone", str(root / "backbone.safetensors")] if arch == "narrow" else []
    return main(["adapter", "import", "modelscope", str(src), "--out", str(out), *backbone, *extra])


@pytest.fixture(scope="module")
def backbone(port_run):
    return load_clip(port_run[0] / ("backbone.safetensors" if port_run[3] == "narrow" else "ViT-B-32.pt"))


def _diffs(model, tokens, video, port: dict) -> tuple[float, float]:
    """max |vop - port| of text and video embeddings, both L2-normalised (the port pools frames
    without renormalising)."""
    with torch.no_grad():
        text, vid = model.encode_text(tokens), model.encode_video(video)
    dt = (text - F.normalize(port["text"], dim=-1)).abs().max().item()
    dv = (vid - F.normalize(port["video"], dim=-1)).abs().max().item()
    return dt, dv


def _assert_equal(model, tokens, video, port: dict, what: str) -> None:
    dt, dv = _diffs(model, tokens, video, port)
    print(f"{what}: max |vop - port| text {dt:.2e}, video {dv:.2e}")
    assert dt <= TOL and dv <= TOL, (dt, dv)


def test_basic_vop_equals_the_port(port_run, backbone, tmp_path, capsys, monkeypatch):
    root, video, port, arch = port_run
    assert _import(root, root / "vop", tmp_path / "vop", arch) == 0
    out = capsys.readouterr().out
    assert "as method 'vop'" in out and "module.text_prompt_learner.text_prompts -> prompts.text.tokens" in out
    meta = read_metadata(tmp_path / "vop")
    assert meta["method_config"]["components"][0] == {"type": "text", "text_length": 8,
                                                      "text_placement": "modelscope", "text_prefix_length": 4}
    clip = backbone
    assert meta["backbone"]["weights_sha256"] == clip.weights_sha256
    from vop import __version__

    assert meta["extra"]["imported_from"]["vop_version"] == __version__  # which import code made this adapter
    model = load_adapter(tmp_path / "vop", clip)

    tokens = tokenize(CAPTIONS)  # vop's own tokenizer at 77, as vop eval / index / serve call it
    assert torch.equal(prompted.fit_slots(tokens, 69), port["vop"]["tokens"])  # same ids as the port's
    _assert_equal(model, tokens, video, port["vop"], f"{arch} basic VoP")

    # the check can fail: without ln_pre on the first layer's visual prompts (the port normalises
    # them with the image tokens) the videos differ far beyond the tolerance
    shallow_layer = prompted._shallow_layer

    def no_ln_pre(clip, i, x, frames, shallow):
        if i != 0:
            return shallow_layer(clip, i, x, frames, shallow)
        ln_pre = clip.visual.ln_pre  # the image tokens are normalised already; only the prompts skip it
        clip.visual.ln_pre = torch.nn.Identity()
        try:
            return shallow_layer(clip, i, x, frames, shallow)
        finally:
            clip.visual.ln_pre = ln_pre

    monkeypatch.setattr(prompted, "_shallow_layer", no_ln_pre)
    _, dv = _diffs(model, tokens, video, port["vop"])
    monkeypatch.undo()
    print(f"without ln_pre on layer-1 prompts: video {dv:.2e}")
    assert dv > 1e-3, dv

    # the check can fail: the paper's placement of the same prompts gives other text embeddings
    paper = build_model(clip, "vop", 12)
    with torch.no_grad():
        paper.prompts["text"].tokens.copy_(model.prompts["text"].tokens)
        far = (paper.encode_text(tokens) - F.normalize(port["vop"]["text"], dim=-1)).abs().amax(dim=-1)
    print(f"paper placement instead: min over captions of max |diff| {far.min().item():.2e}")
    assert (far > 1e-2).all(), far


def test_bias_series_equals_the_port(port_run, backbone, tmp_path, capsys):
    root, video, port, arch = port_run
    folder = root / "cv_vit-b32_retrieval_vop_bias"
    # "proj" cannot hold the tuned biases: the error names what cannot be mapped
    assert _import(root, folder, tmp_path / "p", arch, "--method", "proj") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not trained by vop's 'proj'" in err and "clip.ln_final.bias" in err
    assert _import(root, folder, tmp_path / "bias", arch) == 0
    assert "as method 'bias'" in capsys.readouterr().out
    clip = backbone
    model = load_adapter(tmp_path / "bias", clip)
    assert model.method == "bias"
    tokens = tokenize(CAPTIONS)
    assert torch.equal(tokens, port["bias"]["tokens"])
    _assert_equal(model, tokens, video, port["bias"], f"{arch} bias series")
    with torch.no_grad():  # and the biases matter: plain CLIP is far from the port's output
        assert (F.normalize(clip.encode_text(tokens), dim=-1)
                - F.normalize(port["bias"]["text"], dim=-1)).abs().max() > 1e-2


# --------------------------------------------------------------------------- tiny folders, errors


def _tiny_folder(root: Path, hp: dict | None = None, series: bool = False, state_fn=None) -> Path:
    """A ModelScope-style folder on the tiny config (released key layout, tiny shapes)."""
    clip = build_clip("tiny", seed=0)
    root.mkdir(parents=True, exist_ok=True)
    torch.save(clip.state_dict(), root / "tiny.pt")
    hp = hp or {**VOP_HP, "input_res": 32, "num_frames": 4}
    (root / "configuration.json").write_text(configuration(hp))
    sd = {f"clip.{k}": v.clone() for k, v in clip.state_dict().items()}
    if not series:
        sd["visual_prompt_learner.visual_prompts"] = torch.randn(2, 1, hp["vp_token_num"], 64)
        sd["text_prompt_learner.text_prompts"] = torch.randn(2, hp["tp_prefix_token_num"] + hp["tp_suffix_token_num"], 32)
        for k, v in clip.visual.state_dict().items():
            sd[f"image_encoder.{k}"] = v
    if state_fn is not None:
        state_fn(sd)
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}},
               root / ("VoPSE_msrvtt9k.pth" if series else "VoP_msrvtt9k.pth"))
    return root


def _fails(folder: Path, tmp_path: Path, capsys, *extra: str) -> str:
    code = main(["adapter", "import", "modelscope", str(folder), "--out", str(tmp_path / "out"),
                 "--backbone", str(folder / "tiny.pt"), *extra])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("vop adapter import: error: ") and err.count("\n") == 1, err
    return err


def test_tiny_import_and_modelscope_placement(tmp_path, capsys):
    folder = _tiny_folder(tmp_path / "m")
    assert main(["adapter", "import", "modelscope", str(folder / "VoP_msrvtt9k.pth"), "--out",
                 str(tmp_path / "a"), "--backbone", str(folder / "tiny.pt")]) == 0
    model = load_adapter(tmp_path / "a", load_clip(folder / "tiny.pt"))
    sd = torch.load(folder / "VoP_msrvtt9k.pth", weights_only=True)["state_dict"]
    assert torch.equal(model.prompts["visual"].tokens, sd["module.visual_prompt_learner.visual_prompts"][:, 0])
    # the cut at the last read-out position is exact: batch alone == batch together
    tokens = tokenize(["a dog", "a cat runs after a ball in the long grass"])
    with torch.no_grad():
        both = model.encode_text(tokens)
        one = torch.cat([model.encode_text(tokens[i:i + 1]) for i in range(2)])
    assert (both - one).abs().max() < 1e-5
    assert main(["adapter", "import", "modelscope", str(folder), "--out", str(tmp_path / "a"),
                 "--backbone", str(folder / "tiny.pt")]) == 2
    assert "already holds an adapter" in capsys.readouterr().err


@pytest.mark.parametrize("case, expect", [
    ("missing", "missing key module.text_prompt_learner.text_prompts"),
    ("shape", "module.visual_prompt_learner.visual_prompts has shape (2, 1, 7, 64), expected (2, 1, 8, 64)"),
    ("clip", "module.clip.visual.proj differs from the backbone's visual.proj"),
    ("alias", "module.image_encoder.ln_post.weight differs from the backbone's visual.ln_post.weight"),
    ("unexpected", "unexpected key module.extra.thing"),
    ("clip_missing", "missing key module.clip.token_embedding.weight"),
])
def test_broken_checkpoints(tmp_path, capsys, case, expect):
    def edit(sd):
        if case == "missing":
            del sd["text_prompt_learner.text_prompts"]
        elif case == "shape":
            sd["visual_prompt_learner.visual_prompts"] = torch.randn(2, 1, 7, 64)
        elif case == "clip":
            sd["clip.visual.proj"] = sd["clip.visual.proj"] + 1
        elif case == "alias":
            sd["image_encoder.ln_post.weight"] = sd["image_encoder.ln_post.weight"] + 1
        elif case == "unexpected":
            sd["extra.thing"] = torch.zeros(1)
        elif case == "clip_missing":
            del sd["clip.token_embedding.weight"]

    assert expect in _fails(_tiny_folder(tmp_path / "m", state_fn=edit), tmp_path, capsys)


def test_refuses_pickles_with_code_and_bad_files(tmp_path, capsys):
    import argparse

    folder = _tiny_folder(tmp_path / "m")
    ckpt = folder / "VoP_msrvtt9k.pth"
    torch.save({"state_dict": {}, "args": argparse.Namespace(lr=1)}, ckpt)
    err = _fails(folder, tmp_path, capsys)
    assert "refused: the pickle needs code to load (it needs argparse.Namespace)" in err
    ckpt.write_bytes(b"not a checkpoint")
    assert "not a readable torch checkpoint" in _fails(folder, tmp_path, capsys)
    with warnings.catch_warnings():  # torch.jit is deprecated; OpenAI's CLIP archives still use it
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(torch.nn.Linear(2, 2)).save(str(ckpt))
    assert "a TorchScript archive (code)" in _fails(folder, tmp_path, capsys)
    _tiny_folder(folder)
    (folder / "configuration.json").write_text(configuration({**VOP_HP, "input_res": 32, "pooling_type": "transformer"}))
    assert "pooling_type 'transformer'" in _fails(folder, tmp_path, capsys)
    (folder / "configuration.json").write_text(configuration({"num_frames": 4}))
    assert "hyperparam lacks vp_token_num" in _fails(folder, tmp_path, capsys)
    (folder / "configuration.json").unlink()
    assert "configuration.json: not found" in _fails(folder, tmp_path, capsys)
    assert "checkpoint files" in _fails(tmp_path, tmp_path, capsys)


def test_series_mapping_on_tiny(tmp_path, capsys):
    clip = build_clip("tiny", seed=0)

    def tune(names):
        def edit(sd):
            for n in names:
                sd[f"clip.{n}"] = sd[f"clip.{n}"] + 0.5
        return edit

    last = [f"transformer.resblocks.1.{k}" for k in ("attn.in_proj_weight", "mlp.c_fc.bias")]
    cases = {"proj": (["visual.proj", "text_projection"], "proj"),
             "bias": (["visual.transformer.resblocks.0.attn.in_proj_bias", "ln_final.bias"], "bias"),
             "partial": (last, "partial"),
             "heads": ([*last, "ln_final.weight"], "partial+heads")}
    for name, (names, method) in cases.items():
        folder = _tiny_folder(tmp_path / name, series=True, state_fn=tune(names))
        model, report = convert_modelscope(folder, clip)
        assert report.method == method and report.kind == "series", name
        params = dict(model.clip.named_parameters())
        for n in names:
            assert torch.equal(params[n], clip.state_dict()[n] + 0.5)
    assert trained_set(clip, "proj") == {"visual.proj", "text_projection"}
    # a tuned tensor no baseline trains: the error names it; --method full maps everything
    folder = _tiny_folder(tmp_path / "odd", series=True,
                          state_fn=tune(["visual.transformer.resblocks.0.mlp.c_fc.weight", "visual.proj"]))
    err = _fails(folder, tmp_path, capsys)
    assert "no vop baseline trains all 2 tuned tensors" in err
    assert "cannot map 1: clip.visual.transformer.resblocks.0.mlp.c_fc.weight" in err
    model, report = convert_modelscope(folder, clip, method="full")
    assert model.method == "full" and len(report.mapped) == len(list(clip.parameters())) - 1
    # logit_scale is reported, never mapped
    folder = _tiny_folder(tmp_path / "scale", series=True, state_fn=tune(["logit_scale", "visual.proj"]))
    _, report = convert_modelscope(folder, clip)
    assert report.method == "proj" and list(report.unmapped) == ["module.clip.logit_scale"]
    with pytest.raises(ModelScopeError, match="applies to series checkpoints"):
        convert_modelscope(_tiny_folder(tmp_path / "basic"), clip, method="bias")


def test_imported_adapter_indexes_and_searches(tmp_path, capsys):
    """An imported adapter is a normal adapter: ``vop index`` / ``vop search`` load it."""
    from conftest import color_video, write_video

    from vop.index.encoder import build_video_model

    folder = _tiny_folder(tmp_path / "m", hp={**VOP_HP, "input_res": 32, "num_frames": 4})
    assert main(["adapter", "import", "modelscope", str(folder), "--out", str(tmp_path / "a"),
                 "--backbone", str(folder / "tiny.pt")]) == 0
    for i in range(3):
        write_video(tmp_path / "videos" / f"v{i}.mp4", color_video(num_frames=8, size=32, seed=i))
    capsys.readouterr()
    assert main(["index", str(tmp_path / "videos"), "--backbone", str(folder / "tiny.pt"), "--adapter",
                 str(tmp_path / "a"), "--out", str(tmp_path / "idx"), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["search", str(tmp_path / "idx"), "a red square", "-k", "3", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert len(results) == 3
    model = build_video_model(load_clip(folder / "tiny.pt"), tmp_path / "a")
    assert model.prompts["text"].placement == "modelscope"
