"""Non-prompt baselines of the paper: which backbone tensors a method trains.

Every selection is structural (by module type and ownership), never by matching parameter
names: a name filter silently picks up (or misses) tensors when a model grows a new submodule.
These methods change backbone tensors, so ``vop.model.build_model`` gives them a private copy
of the CLIP; the caller's backbone stays frozen and shareable.

Decisions (the paper names these baselines but not their exact tensors):

* ``full``: every backbone tensor except ``logit_scale`` (the loss uses CLIP's frozen scale for
  every method, so results compare). Its "adapter" is the whole model.
* ``bias``: every bias of both encoders, LayerNorm biases included (the BitFit convention);
  ``conv1`` has none.
* ``proj``: ``visual.proj`` and ``text_projection``.
* ``partial``: the last residual block of each encoder; with ``include_heads`` (default off)
  also ``ln_post``/``ln_final`` and the two projections.
"""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from vop.backbone.clip import CLIP, Attention, LayerNorm
from vop.prompts.base import register_component


class _Tuning:
    """A baseline with no values of its own: it only says which backbone tensors train."""

    role = "backbone"
    defaults: ClassVar[dict] = {}

    @classmethod
    def from_config(cls, c: dict, clip_cfg, frames: int):
        return cls()


@register_component
class FullTuning(_Tuning):
    name = "full"

    def select(self, clip: CLIP) -> list[nn.Parameter]:
        return [p for p in clip.parameters() if p is not clip.logit_scale]


def _biases(module: nn.Module) -> list[nn.Parameter]:
    out = []
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, LayerNorm)) and m.bias is not None:
            out.append(m.bias)
        elif isinstance(m, Attention):
            out.append(m.in_proj_bias)
    return out


@register_component
class BiasTuning(_Tuning):
    name = "bias"

    def select(self, clip: CLIP) -> list[nn.Parameter]:
        return _biases(clip)


@register_component
class ProjTuning(_Tuning):
    name = "proj"

    def select(self, clip: CLIP) -> list[nn.Parameter]:
        return [clip.visual.proj, clip.text_projection]


@register_component
class PartialTuning(_Tuning):
    name = "partial"
    defaults: ClassVar[dict] = {"include_heads": False}

    def __init__(self, include_heads: bool = False):
        self.include_heads = include_heads

    @classmethod
    def from_config(cls, c: dict, clip_cfg, frames: int) -> PartialTuning:
        return cls(bool(c["include_heads"]))

    def select(self, clip: CLIP) -> list[nn.Parameter]:
        params = [*clip.visual.transformer.resblocks[-1].parameters(), *clip.transformer.resblocks[-1].parameters()]
        if self.include_heads:
            params += [*clip.visual.ln_post.parameters(), clip.visual.proj,
                       *clip.ln_final.parameters(), clip.text_projection]
        return params
