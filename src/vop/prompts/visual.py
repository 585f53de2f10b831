"""Shared visual prompts (VoP): the same ``length`` tokens for every frame, per layer."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from vop.prompts.base import PROMPT_RANGE, init_tokens, register_component, shallow_depth


@register_component
class SharedPrompts(nn.Module):
    name, role = "visual", "visual"
    defaults: ClassVar[dict] = {"visual_length": 8, "shallow_layers": None}  # None: every vision layer (K^s = K)
    limits: ClassVar[dict] = {"visual_length": PROMPT_RANGE}

    def __init__(self, layers: int, width: int, length: int = 8):
        super().__init__()
        self.layers, self.length = layers, length
        self.tokens = init_tokens(layers, length, width)  # [K, n, D]

    @classmethod
    def from_config(cls, c: dict, clip_cfg, frames: int) -> SharedPrompts:
        return cls(shallow_depth(c, clip_cfg), clip_cfg.vision.width, c["visual_length"])

    def prompts(self, i: int, cls: torch.Tensor) -> torch.Tensor | None:
        """``cls`` ``[B, F, D]`` -> ``[B, F, n, D]`` (the same tokens for every frame)."""
        if i >= self.layers or self.length == 0:
            return None
        b, f, _ = cls.shape
        return self.tokens[i].expand(b, f, -1, -1)
