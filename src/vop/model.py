"""A video-text model: a frozen CLIP + a method (a list of components) + frame pooling.

A method is data: ``METHODS[name]`` is a list of component configs, each a dict with a ``type``
(a key of ``vop.prompts.base.COMPONENTS``) and its values; :func:`register_method` below declares
every method of the paper in one line each. ``vop-fc`` is "text prompts + context prompts in the
shallow layers + inter-frame deep layers", not a class. ``build_model(..., overrides=)`` changes
values (prompt lengths, ``shallow_layers`` = K^s, ``cmm`` ...) and ``model.method_config``
records the resolved list, which is what ``vop.adapter`` saves and rebuilds from.

Video embedding: each frame's embedding is L2-normalised, the frames are averaged and the mean
is L2-normalised again (the CLIP4Clip "meanP" convention: every frame weighs the same whatever
its norm). Similarity is the cosine; ``logit_scale()`` is CLIP's frozen scale.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

import vop.tuning  # noqa: F401 - registers the backbone components (full, bias, proj, partial, adapter)
from vop.backbone import prompted
from vop.backbone.clip import CLIP, CLIPConfig
from vop.prompts.base import COMPONENTS, K_S, check_values, complete, shallow_depth

METHODS: dict[str, list[dict]] = {}


def register_method(name: str, components: list, replace: bool = False) -> None:
    """Declare method ``name``: a list of components, each a registered type name or a dict
    ``{"type": name, key: value}`` with the values that differ from that component's defaults."""
    if name in METHODS and not replace:
        raise ValueError(f"method {name!r} is already registered")
    METHODS[name] = [complete(c) for c in components]  # checks every type and key now


register_method("zeroshot", [])
register_method("full", ["full"])
register_method("bias", ["bias"])
register_method("proj", ["proj"])
register_method("partial", ["partial"])
register_method("adapter-attn", [{"type": "adapter", "where": "attn"}])
register_method("adapter-ffn", [{"type": "adapter", "where": "ffn"}])
register_method("text-prompt", ["text"])
register_method("visual-prompt", ["visual"])
register_method("vop", ["text", "visual"])
register_method("vop-p", ["text", "position"])
register_method("vop-c", ["text", "context"])
# VoP-F*: the frame-level prompts stop at K^s, where the inter-frame deep layers begin
register_method("vop-f", ["text", {"type": "visual", "shallow_layers": K_S}, "frame"])
register_method("vop-fp", ["text", {"type": "position", "shallow_layers": K_S}, "frame"])
register_method("vop-fc", ["text", {"type": "context", "shallow_layers": K_S}, "frame"])


def list_methods() -> list[str]:
    return list(METHODS)


def resolve_method(method: str, overrides: dict | None = None) -> list[dict]:
    """The component list of ``method`` with ``overrides`` applied.

    ``overrides`` is either ``{"components": [...]}`` (a whole list: saved in adapter.json, or a
    method declared in a recipe; ``method`` is then only its name) or flat values set in every
    component that has that key; a key no component has is an error.
    """
    overrides = dict(overrides or {})
    if "components" in overrides:
        comps = [complete(c) for c in overrides.pop("components")]
    elif method in METHODS:
        comps = copy.deepcopy(METHODS[method])
    else:
        raise KeyError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    for key, value in overrides.items():
        hits = [c for c in comps if key in c and key != "type"]
        if not hits:
            known = sorted({k for c in comps for k in c if k != "type"})
            raise KeyError(f"override {key!r} does not apply to method {method!r}; its keys: {known}")
        for c in hits:
            c[key] = value
    return comps


def _context_length(value: int | None, clip: CLIP) -> int:
    """Text tokens per caption (SOT and EOT included): ``value``, or the backbone's own (77 for CLIP)."""
    limit = clip.cfg.text.context_length
    if value is None:
        return limit
    if not 2 <= int(value) <= limit:
        raise ValueError(f"context_length must be in 2..{limit} (the backbone's positions), got {value}")
    return int(value)


class VideoTextModel(nn.Module):
    """Frozen CLIP + method components; see ``docs/architecture.md`` ("Methods") for the contract."""

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
        cls = COMPONENTS[c["type"]]
        if cls.role == "backbone":
            self._trainable += cls.from_config(c, self.clip.cfg, self.frames).select(self.clip)
            return
        if cls.role in self.prompts:
            raise ValueError(f"method {self.method!r} has two {cls.role!r} prompt components")
        self.prompts[cls.role] = cls.from_config(c, self.clip.cfg, self.frames)  # tensors: prompts.<role>.*
        self._trainable += list(self.prompts[cls.role].parameters())

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


def plan_method(clip_cfg: CLIPConfig, method: str, frames: int, comps: list[dict],
                context_length: int | None = None) -> dict[str, tuple[int, ...]]:
    """Check a resolved method on a backbone architecture before anything is built; returns the
    name -> shape of every tensor it trains (the names ``trainable_named_parameters`` gives).

    Every value is checked for type and range (:func:`vop.prompts.base.check_values`, ``frames``
    in 1..``MAX_FRAMES``), then the method is built on the meta device (shapes, no memory) and the
    parameters it adds to the backbone are counted exactly against ``MAX_METHOD_PARAMETERS``: values
    that are each in range can still multiply into gigabytes (``generated_length`` x width^2 for
    ``vop-c``, ``position_length`` x ``frames`` for ``vop-p``).
    """
    from vop.limits import MAX_FRAMES, MAX_METHOD_PARAMETERS, check_int

    check_int(frames, 1, MAX_FRAMES, "frames")
    for c in comps:
        check_values(c)
    try:
        with torch.device("meta"):
            clip = CLIP(clip_cfg)
            base = sum(p.numel() for p in clip.parameters())
            model = VideoTextModel(clip, method, frames, copy.deepcopy(comps), "", context_length)
    except (TypeError, RuntimeError, AssertionError, IndexError) as e:  # a value the component cannot take
        raise ValueError(f"method {method!r} cannot be built on {clip_cfg.name}: {str(e)[:200]}") from None
    added = sum(p.numel() for p in model.parameters()) - base
    if added > MAX_METHOD_PARAMETERS:
        raise ValueError(f"method {method!r} would add {added:,} parameters ({4 * added / 2**30:.1f} GiB in float32) "
                         f"to {clip_cfg.name}; vop's ceiling is {MAX_METHOD_PARAMETERS:,}")
    return {n: tuple(p.shape) for n, p in model.trainable_named_parameters()}


def method_shapes(clip_cfg: CLIPConfig, method: str, frames: int, overrides: dict | None = None,
                  context_length: int | None = None) -> dict[str, tuple[int, ...]]:
    """:func:`plan_method` of ``method`` with ``overrides`` (what ``build_model`` would train)."""
    comps = _resolve_depths(resolve_method(method, overrides), clip_cfg)
    return plan_method(clip_cfg, method, frames, comps, context_length)


def _resolve_depths(comps: list[dict], clip_cfg: CLIPConfig) -> list[dict]:
    for c in comps:  # K^s recorded as the layer count it means on this backbone
        if "shallow_layers" in c:
            check_values(c)  # a string or NaN depth is refused here, before it is resolved
            c["shallow_layers"] = shallow_depth(c, clip_cfg)
    return comps


def build_model(clip: CLIP, method: str = "vop", frames: int = 12, overrides: dict | None = None,
                seed: int | None = None, context_length: int | None = None) -> VideoTextModel:
    """Wrap ``clip`` with ``method``. Prompt methods share ``clip`` without changing it; methods
    that train backbone tensors (``full``, ``bias``, ``proj``, ``partial``, adapters) get a private
    copy, so one frozen backbone can serve many adapters. ``seed`` makes the init reproducible.

    ``context_length`` (text tokens per caption; default the backbone's) is decided here once:
    ``model.context_length`` is what adapter.json records and what every text encoder
    (training data, validation, ``evaluate``, the index) tokenizes to."""
    comps = _resolve_depths(resolve_method(method, overrides), clip.cfg)
    plan_method(clip.cfg, method, frames, comps, context_length)  # sizes checked before anything is built
    sha = clip.weights_sha256
    if any(COMPONENTS[c["type"]].role == "backbone" for c in comps):
        clip = copy.deepcopy(clip)
        clip._sha256 = None  # the copy's weights will train away from the cached hash
    if seed is None:
        return VideoTextModel(clip, method, frames, comps, sha, context_length)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return VideoTextModel(clip, method, frames, comps, sha, context_length)
