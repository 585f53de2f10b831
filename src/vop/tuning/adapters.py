"""Bottleneck adapters (baselines ``adapter-attn`` / ``adapter-ffn``).

A small down -> ReLU -> up branch runs in parallel to every attention (or MLP) branch of both
encoders, on the same LayerNorm output, through the blocks' ``attn_adapter`` / ``mlp_adapter``
hooks. ``up`` starts at zero, so before training the model equals CLIP exactly.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from vop.backbone.clip import CLIP
from vop.limits import MAX_DIM
from vop.prompts.base import register_component

HOOKS = {"attn": "attn_adapter", "ffn": "mlp_adapter"}  # config "where" -> block hook attribute


class Bottleneck(nn.Module):
    def __init__(self, width: int, hidden: int = 64):
        super().__init__()
        self.down = nn.Linear(width, hidden)
        self.up = nn.Linear(hidden, width)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(torch.relu(self.down(x)))


@register_component
class AdapterTuning:
    """Installs one ``Bottleneck`` per block into the (private) backbone and trains only them."""

    name, role = "adapter", "backbone"
    defaults: ClassVar[dict] = {"where": "attn", "hidden": 64}
    limits: ClassVar[dict] = {"hidden": (1, MAX_DIM)}

    def __init__(self, where: str = "attn", hidden: int = 64):
        if where not in HOOKS:
            raise ValueError(f"adapter 'where' must be one of {sorted(HOOKS)}, got {where!r}")
        self.hook, self.hidden = HOOKS[where], hidden

    @classmethod
    def from_config(cls, c: dict, clip_cfg, frames: int) -> AdapterTuning:
        return cls(c["where"], c["hidden"])

    def select(self, clip: CLIP) -> list[nn.Parameter]:
        params = []
        for tr in (clip.visual.transformer, clip.transformer):
            for block in tr.resblocks:
                if getattr(block, self.hook) is None:
                    setattr(block, self.hook, Bottleneck(tr.width, self.hidden))
                params += list(getattr(block, self.hook).parameters())
        return params
