"""Run the authors' ModelScope VoP port (PyPI ``modelscope``, pinned in the test extra) in its own
process, for ``test_modelscope_import.py``: ``python tests/modelscope_port.py ROOT``.

``ROOT`` holds ``ViT-B-32.pt`` (random weights), ``inputs.pt`` (captions and a video) and two
model folders, ``vop/`` and ``cv_vit-b32_retrieval_vop_bias/``, each with a
``configuration.json`` and a link to the backbone. This script writes the checkpoints in the
released key layout, taken from the port's own modules (``VoP_msrvtt9k.pth``: random prompts;
``VoPSE_msrvtt9k.pth``: every bias of the port's CLIP perturbed, as a BitFit run would leave
them), then loads each folder with the port's model classes exactly as its pipeline does and
writes what they compute to ``ROOT/port.pt``. A separate process keeps the port's global side
effects (it seeds every RNG) and the import stand-ins below out of pytest.

The port's ``basic_utils`` imports ``cv2``, ``ujson`` and ``torchvision`` for video reading
and transforms we do not use (torchvision does not install next to our torch); empty modules
stand in for the ones that are not installed.
"""

from __future__ import annotations

import gzip
import importlib.util
import sys
import types
from collections import OrderedDict
from pathlib import Path

import torch


def import_port():
    """The port's modules, imported from the installed package. The package ``__init__`` files of
    ``modelscope.models``, ``.cv`` and ``.cv.vop_retrieval`` only register and lazily import every
    model of the library (and ``transformers``, seconds of CPU); they are replaced by bare
    packages over the same folders. Every module the VoP code imports is the real one."""
    root = Path(importlib.util.find_spec("modelscope").submodule_search_locations[0])
    for pkg in ("modelscope.models", "modelscope.models.cv", "modelscope.models.cv.vop_retrieval"):
        module = types.ModuleType(pkg)
        module.__path__ = [str(root.joinpath(*pkg.split(".")[1:]))]
        sys.modules[pkg] = module
    missing = [n for n in ("cv2", "ujson", "torchvision") if importlib.util.find_spec(n) is None]
    for name in [*missing, *(["torchvision.transforms"] if "torchvision" in missing else [])]:
        sys.modules[name] = types.ModuleType(name)
    if "torchvision" in missing:
        sys.modules["torchvision"].transforms = sys.modules["torchvision.transforms"]
    from modelscope.models.cv.vop_retrieval import model, model_se, tokenization_clip
    from modelscope.models.cv.vop_retrieval.backbone import load_clip
    from modelscope.utils.config import Config

    return model, model_se, tokenization_clip, load_clip, Config


def released_layout(module: torch.nn.Module) -> dict:
    """``{'state_dict': {'module.<key>': tensor}}`` as the released files store it (one tensor per
    storage: the port's encoders hold CLIP's modules again under their own names)."""
    return {"state_dict": OrderedDict((f"module.{k}", v) for k, v in module.state_dict().items())}


def main(root: Path) -> None:
    model, model_se, tokenization_clip, load_clip, Config = import_port()
    vop_dir, se_dir = root / "vop", root / "cv_vit-b32_retrieval_vop_bias"
    gen = torch.Generator().manual_seed(1)

    # basic VoP: the port's own modules, in VoP.__init__'s order, give the released key layout
    cfg = Config.from_file(str(vop_dir / "configuration.json")).hyperparam
    clip = load_clip(name=str(root / "ViT-B-32.pt"))
    cfg.vpt_layers = list(range(clip.visual.transformer.layers))
    cfg.tpt_layers = list(range(clip.transformer.layers))
    holder = torch.nn.Module()
    holder.clip = clip
    holder.pool_frames = model.BaselinePooling(cfg.pooling_type, cfg)
    holder.visual_prompt_learner = model.VisualPromptLearner(clip, cfg)
    holder.image_encoder = model.ImageEncoder(clip, cfg)
    holder.text_prompt_learner = model.TextPromptLearner(clip, cfg)
    holder.text_encoder = model.TextEncoder(clip, cfg)
    with torch.no_grad():  # trained prompts are not tiny; 0.5 makes every prompt token matter
        for p in (holder.visual_prompt_learner.visual_prompts, holder.text_prompt_learner.text_prompts):
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    torch.save(released_layout(holder), vop_dir / "VoP_msrvtt9k.pth")

    # series "bias": the port's CLIP with every bias changed
    se = torch.nn.Module()
    se.clip = clip  # the basic file is written; its CLIP is reused
    with torch.no_grad():
        for name, p in se.clip.named_parameters():
            if name.endswith("bias"):
                p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    torch.save(released_layout(se), se_dir / "VoPSE_msrvtt9k.pth")
    del holder, se, clip

    inputs = torch.load(root / "inputs.pt", weights_only=True)
    with gzip.open(inputs["bpe"]) as f:
        bpe = f.read().decode("utf-8").split("\n")
    out = {}
    with torch.no_grad():
        for key, folder, cls in (("vop", vop_dir, model.VoP), ("bias", se_dir, model_se.VideoTextRetrievalModelSeries)):
            port = cls(str(folder))  # reads the folder as ModelScope does
            tok = tokenization_clip.LengthAdaptiveTokenizer(Config.from_file(str(folder / "configuration.json"))
                                                            .hyperparam, bpe)
            tokens = tok(inputs["captions"])
            out[key] = {"tokens": tokens, "text": port.get_text_features(tokens),
                        "video": port.get_video_features(inputs["video"])}
            del port
    torch.save(out, root / "port.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
