"""The frozen inference graphs of a ``vop.model`` model, as ``torch.export`` programs.

What is exported is the whole method, not the bare backbone: ``encode_video`` (patch embedding,
prompts, frame tokens, inter-frame layers, pooling, normalisation) and ``encode_text`` (prompts,
either text placement, read-out, normalisation), each with a dynamic batch, so every method and
every imported adapter (ModelScope included) runs on the exported graph unchanged.

``torch.export`` rather than ``openvino.convert_model(module, example_input=...)``: the latter
goes through a TorchScript trace whose check fails on the prompted methods.

Text: the transformer runs only up to the batch's last EOT (``vop.backbone.prompted.cut_after_eot``),
a length that depends on the data. The exported graph therefore takes a dynamic sequence length
and :func:`text_input` cuts the tokens in Python before it runs. The ModelScope placement joins
prompts and words at fixed slots, so its graph takes the full ``context_length`` tokens.
"""

from __future__ import annotations

import re

import torch
from torch import nn

MAX_BATCH = 4096  # upper bound of the exported dynamic batch dimension


class VideoGraph(nn.Module):
    """``[B, F, 3, S, S]`` CLIP-normalised pixels -> ``[B, E]`` unit vectors (``model.encode_video``)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.model.encode_video(video)


class TextGraph(nn.Module):
    """``[B, L]`` token ids (already cut by :func:`text_input`) -> ``[B, E]`` unit vectors."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(tokens)


def modelscope_text(model) -> bool:
    """True when the text side uses the ModelScope port's fixed-slot placement."""
    text = model.prompts["text"] if "text" in model.prompts else None  # noqa: SIM401 - ModuleDict has no get
    return text is not None and getattr(text, "placement", None) == "modelscope"


def text_input(model, tokens: torch.Tensor) -> torch.Tensor:
    """Tokens as the exported text graph takes them: ``[B, L] -> [B, L']`` cut after the batch's
    last EOT (what ``encode_text`` does inside PyTorch), or the full length for the ModelScope placement."""
    if modelscope_text(model) or tokens.shape[0] == 0:
        return tokens
    eot = tokens.argmax(dim=-1)  # the EOT id is the vocabulary's largest
    return tokens[:, : max(int(eot.max()) + 1, 2)]  # [B, L'], at least the exported minimum of 2


def video_example(model, batch: int = 2) -> torch.Tensor:
    size = model.clip.cfg.vision.image_size
    return torch.zeros(batch, model.frames, 3, size, size)  # [B, F, 3, S, S]


def export_video(model) -> torch.export.ExportedProgram:
    """``model.encode_video`` with a dynamic batch (any ``B >= 1``)."""
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with torch.no_grad():
        return torch.export.export(VideoGraph(model).eval(), (video_example(model),),
                                   dynamic_shapes=({0: batch},), strict=False)


def export_text(model) -> torch.export.ExportedProgram:
    """``model.encode_text`` with a dynamic batch and (except the ModelScope placement) a dynamic length."""
    from vop.backbone.tokenizer import tokenize

    length = model.context_length
    tokens = tokenize(["a photo of a dog", "a short caption"], context_length=length)  # [2, L]
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    if modelscope_text(model):
        shapes = ({0: batch},)
    else:
        shapes = ({0: batch, 1: torch.export.Dim("length", min=2, max=length)},)
        tokens = tokens[:, : max(length // 2, 3)].clone()  # [2, L/2], not a view: away from both bounds
    with torch.no_grad():
        return torch.export.export(TextGraph(model).eval(), (tokens,), dynamic_shapes=shapes, strict=False)


_BLOCK = re.compile(r"visual\.transformer\.resblocks\.(\d+)(\.|$)")


def layer_names(program: torch.export.ExportedProgram) -> dict[str, str]:
    """The layer of each call in ``program``'s graph, by node name (the prefix of an OpenVINO op's
    friendly name after ``openvino.convert_model``): ``"block N"`` for the image tower's residual
    block N, otherwise the innermost module's path. Used to quantize one layer at a time
    (``benchmarks/runtime_quality.py`` reports the int8 error each block causes on its own)."""
    names = {}
    for node in program.graph.nodes:
        stack = node.meta.get("nn_module_stack") if node.op == "call_function" else None
        if not stack:
            continue
        path = list(stack.values())[-1][0]  # the innermost module, e.g. model.clip.visual.transformer.resblocks.3.mlp
        block = _BLOCK.search(path)
        names[node.name] = f"block {block.group(1)}" if block else path
    return names
