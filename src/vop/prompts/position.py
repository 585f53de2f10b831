"""Position-specific video prompts (VoP-P): per layer, ``shared_length`` tokens for every frame
plus ``position_length`` tokens taken from a table indexed by the frame's position j in 1..F."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from vop.prompts.base import PROMPT_RANGE, init_tokens, register_component, shallow_depth


@register_component
class PositionPrompts(nn.Module):
    name, role = "position", "visual"
    defaults: ClassVar[dict] = {"shared_length": 4, "position_length": 4, "shallow_layers": None}
    limits: ClassVar[dict] = {"shared_length": PROMPT_RANGE, "position_length": PROMPT_RANGE}
    needs_frames = True  # the table has one row per frame position

    def __init__(self, layers: int, width: int, frames: int, shared_length: int = 4, position_length: int = 4):
        super().__init__()
        self.layers = layers
        self.shared = init_tokens(layers, shared_length, width)  # [K, ns, D]
        self.position = init_tokens(layers, frames, position_length, width)  # [K, F, np, D]

    @classmethod
    def from_config(cls, c: dict, clip_cfg, frames: int) -> PositionPrompts:
        return cls(shallow_depth(c, clip_cfg), clip_cfg.vision.width, frames,
                   c["shared_length"], c["position_length"])

    def prompts(self, i: int, cls: torch.Tensor) -> torch.Tensor | None:
        """``cls`` ``[B, F, D]`` -> ``[B, F, ns + np, D]``: shared tokens, then the frame's own."""
        if i >= self.layers:
            return None
        b, f, _ = cls.shape
        shared = self.shared[i].expand(b, f, -1, -1)  # [B, F, ns, D]
        position = self.position[i].expand(b, -1, -1, -1)  # [B, F, np, D]
        return torch.cat([shared, position], dim=2)
