"""A video-text model: a frozen CLIP + a method (a list of components) + frame pooling.

A method is data: ``METHODS[name]`` is a list of component configs, each a dict with a ``type``
(a key of ``vop.prompts.COMPONENTS`` or ``vop.tuning.TUNINGS``) and its values. ``vop-fc`` is
"text prompts + context prompts in the shallow layers + inter-frame deep layers", not a class.
``build_model(..., overrides=)`` changes values (prompt lengths, ``shallow_layers`` = K^s,
``cmm`` ...) and ``model.method_config`` records the resolved list, which is what
``vop.adapter`` saves and rebuilds from.

Video embedding: each frame's embedding is L2-normalised, the frames are averaged and the mean
is L2-normalised again (the CLIP4Clip "meanP" convention: every frame weighs the same whatever
its norm). Similarity is the cosine; ``logit_scale()`` is CLIP's frozen scale.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from vop.backbone import prompted
from vop.backbone.clip import CLIP
from vop.prompts import COMPONENTS
from vop.prompts.visual import resolve_depth
from vop.tuning import TUNINGS

_TEXT = {"type": "text", "text_length": 8, "text_placement": "paper"}  # "modelscope": imported adapters
_VISUAL = {"type": "visual", "visual_length": 8, "shallow_layers": None}
_POSITION = {"type": "position", "shared_length": 4, "position_length": 4, "shallow_layers": None}
_CONTEXT = {"type": "context", "shared_length": 4, "generated_length": 4, "cmm": "bilstm", "shallow_layers": None}
# K^s: the paper's 8 of 12 layers, written as the fraction 2/3 so that it means the same on
# other depths (4 of 6 on the demo's backbone); resolved to a layer count when the model is built.
_DEEP_START = 2 / 3
_FRAME = {"type": "frame", "video_length": 8, "shallow_layers": _DEEP_START, "frame_position": True}


def _shallow(c: dict) -> dict:
    return {**c, "shallow_layers": _DEEP_START}


METHODS: dict[str, list[dict]] = {
    "zeroshot": [],
    "full": [{"type": "full"}],
    "bias": [{"type": "bias"}],
    "proj": [{"type": "proj"}],
    "partial": [{"type": "partial", "include_heads": False}],
    "adapter-attn": [{"type": "adapter", "where": "attn", "hidden": 64}],
    "adapter-ffn": [{"type": "adapter", "where": "ffn", "hidden": 64}],
    "text-prompt": [_TEXT],
    "visual-prompt": [_VISUAL],
    "vop": [_TEXT, _VISUAL],
    "vop-p": [_TEXT, _POSITION],
    "vop-c": [_TEXT, _CONTEXT],
    "vop-f": [_TEXT, _shallow(_VISUAL), _FRAME],
    "vop-fp": [_TEXT, _shallow(_POSITION), _FRAME],
    "vop-fc": [_TEXT, _shallow(_CONTEXT), _FRAME],
}
BACKBONE_METHODS = ("full", "bias", "proj", "partial", "adapter")  # component types that change CLIP


def list_methods() -> list[str]:
    return list(METHODS)


def resolve_method(method: str, overrides: dict | None = None) -> list[dict]:
    """The component list of ``method`` with ``overrides`` applied.

    ``overrides`` is either ``{"components": [...]}`` (a whole saved list, as in adapter.json) or
    flat values set in every component that has that key; a key no component has is an error.
    """
    if method not in METHODS:
        raise KeyError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    overrides = dict(overrides or {})
    comps = copy.deepcopy(overrides.pop("components", METHODS[method]))
    for key, value in overrides.items():
        hits = [c for c in comps if key in c and key != "type"]
        if not hits:
            known = sorted({k for c in comps for k in c if k != "type"})
            raise KeyError(f"override {key!r} does not apply to method {method!r}; its keys: {known}")
        for c in hits:
            c[key] = value
    for c in comps:
        if c.get("type") not in COMPONENTS and c.get("type") not in TUNINGS:
            raise KeyError(f"unknown component type {c.get('type')!r} in method {method!r}")
    return comps


def _context_length(value: int | None, clip: CLIP) -> int:
    """Text tokens per caption (SOT and EOT included): ``value``, or the backbone's own (77 for CLIP)."""
    limit = clip.cfg.text.context_length
    if value is None:
        return limit
    if not 2 <= int(value) <= limit:
        raise ValueError(f"context_length must be in 2..{limit} (the backbone's positions), got {value}")
    return int(value)


def _resolve_depth(comps: list[dict], layers: int) -> None:
    for c in comps:
        if "shallow_layers" in c:
            c["shallow_layers"] = resolve_depth(c["shallow_layers"], layers)


class VideoTextModel(nn.Module):
    """Frozen CLIP + method components; see ``docs/ARCHITECTURE.md`` ("Methods") for the contract."""

    def __init__(self, clip: CLIP, method: str, frames: int, components: list[dict], backbone_sha256: str,
                 context_length: int | None = None):
        super().__init__()
        self.clip = clip
        self.method = method
        self.frames = frames
        self.context_length = _context_length(context_length, clip)
        self.method_config = {"components": components}
        self.backbone_sha256 = backbone_sha256
        self.prompts = nn.ModuleDict()
        self._trainable: list[nn.Parameter] = []
        for c in components:
            self._add_component(c)
        for p in self._trainable:
            p.requires_grad_(True)
        self._trainable_ids = {id(p) for p in self._trainable}

    def _add_component(self, c: dict) -> None:
        if c["type"] in TUNINGS:
            self._trainable += TUNINGS[c["type"]].from_config(c, self.clip.cfg, self.frames).select(self.clip)
            return
        module = COMPONENTS[c["type"]].from_config(c, self.clip.cfg, self.frames)
        if module.role in self.prompts:
            raise ValueError(f"method {self.method!r} has two {module.role!r} prompt components")
        self.prompts[module.role] = module
        self._trainable += list(module.parameters())

    @property
    def backbone_name(self) -> str:
        return self.clip.cfg.name

    def _part(self, role: str):
        return self.prompts[role] if role in self.prompts else None  # noqa: SIM401 - ModuleDict has no .get

    # ----- encoders
    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[B, L]`` token ids -> ``[B, E]``, L2-normalised."""
        text = self._part("text")
        if text is not None and text.placement == "modelscope":
            x = prompted.encode_text_modelscope(self.clip, tokens, text.tokens, text.prefix_length)
        else:
            x = prompted.encode_text(self.clip, tokens, text.prompts if text is not None else None)
        return F.normalize(x, dim=-1)

    def encode_frames(self, video: torch.Tensor) -> torch.Tensor:
        """``[B, F, 3, H, W]`` -> per-frame embeddings ``[B, F, E]`` (not normalised)."""
        if video.dim() != 5:
            raise ValueError(f"encode_video expects [B, F, 3, H, W], got shape {tuple(video.shape)}")
        if video.shape[1] != self.frames and any(getattr(m, "needs_frames", False) for m in self.prompts.values()):
            raise ValueError(f"method {self.method!r} was built for {self.frames} frames, got {video.shape[1]}")
        return prompted.encode_frames(self.clip, video, self._part("visual"), self._part("deep"))

    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """``[B, F, 3, H, W]`` CLIP-normalised pixels -> ``[B, E]``, L2-normalised."""
        per_frame = F.normalize(self.encode_frames(video), dim=-1)  # [B, F, E]
        return F.normalize(per_frame.mean(dim=1), dim=-1)

    @staticmethod
    def similarity(text: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        """Cosine similarity of normalised embeddings: ``[Bt, E] x [Bv, E] -> [Bt, Bv]``."""
        return text @ video.t()

    def logit_scale(self) -> torch.Tensor:
        return self.clip.logit_scale.detach().exp()

    # ----- parameter budget
    def trainable_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """The method's tensors, chosen structurally at construction (by module ownership)."""
        return [(n, p) for n, p in self.named_parameters() if id(p) in self._trainable_ids]

    def parameter_budget(self) -> dict:
        trainable = sum(p.numel() for _, p in self.trainable_named_parameters())
        total = sum(p.numel() for p in self.parameters())
        return {"trainable": trainable, "total": total, "percent": 100.0 * trainable / total}

    def parameter_breakdown(self) -> dict[str, int]:
        """Trainable numbers per part; the frame positional embedding gets its own line."""
        out: dict[str, int] = {}
        for role, module in self.prompts.items():
            for name, p in module.named_parameters():
                key = "frame_pos" if name == "frame_pos" else role
                out[key] = out.get(key, 0) + p.numel()
        backbone = sum(p.numel() for n, p in self.trainable_named_parameters() if n.startswith("clip."))
        if backbone:
            out["backbone"] = backbone
        return out

    def budget_line(self) -> str:
        return format_budget(self.parameter_budget())


def format_budget(b: dict) -> str:
    return f"trainable params: {b['trainable']:,} || all params: {b['total']:,} || trainable%: {b['percent']:.4f}"


def build_model(clip: CLIP, method: str = "vop", frames: int = 12, overrides: dict | None = None,
                seed: int | None = None, context_length: int | None = None) -> VideoTextModel:
    """Wrap ``clip`` with ``method``. Prompt methods share ``clip`` without changing it; methods
    that train backbone tensors (``full``, ``bias``, ``proj``, ``partial``, adapters) get a private
    copy, so one frozen backbone can serve many adapters. ``seed`` makes the init reproducible.

    ``context_length`` (text tokens per caption; default the backbone's) is decided here once:
    ``model.context_length`` is what adapter.json records and what every text encoder
    (training data, validation, ``evaluate``, the index) tokenizes to."""
    comps = resolve_method(method, overrides)
    _resolve_depth(comps, clip.cfg.vision.layers)
    sha = clip.weights_sha256
    if any(c["type"] in BACKBONE_METHODS for c in comps):
        clip = copy.deepcopy(clip)
        clip._sha256 = None  # the copy's weights will train away from the cached hash
    if seed is None:
        return VideoTextModel(clip, method, frames, comps, sha, context_length)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return VideoTextModel(clip, method, frames, comps, sha, context_length)
