"""Shared visual prompts (VoP): the same ``length`` tokens for every frame, per layer."""

from __future__ import annotations

import torch
from torch import nn

from vop.prompts.text import INIT_STD


def resolve_depth(s: float | None, layers: int) -> int:
    """K^s as a layer count: None -> K; a fraction in (0, 1) -> round(K * s); a negative int ->
    K + s (at least 1); otherwise the int itself."""
    if s is None:
        return layers
    if isinstance(s, float) and 0 < s < 1:
        return max(1, round(layers * s))
    return max(1, layers + int(s)) if s < 0 else int(s)


def shallow_depth(c: dict, clip_cfg) -> int:
    """How many (first) vision layers get frame-level prompts: ``shallow_layers`` (see
    :func:`resolve_depth`) or all K."""
    k = clip_cfg.vision.layers
    ks = resolve_depth(c.get("shallow_layers"), k)
    if not 0 <= ks <= k:
        raise ValueError(f"shallow_layers={ks} is outside 0..{k} (the vision encoder has {k} layers)")
    return ks


class SharedPrompts(nn.Module):
    role = "visual"

    def __init__(self, layers: int, width: int, length: int = 8):
        super().__init__()
        self.layers, self.length = layers, length
        self.tokens = nn.Parameter(torch.randn(layers, length, width) * INIT_STD)  # [K, n, D]

    @classmethod
    def from_config(cls, c: dict, clip_cfg, frames: int) -> SharedPrompts:
        return cls(shallow_depth(c, clip_cfg), clip_cfg.vision.width, c["visual_length"])

    def prompts(self, i: int, cls: torch.Tensor) -> torch.Tensor | None:
        """``cls`` ``[B, F, D]`` -> ``[B, F, n, D]`` (the same tokens for every frame)."""
        if i >= self.layers or self.length == 0:
            return None
        b, f, _ = cls.shape
        return self.tokens[i].expand(b, f, -1, -1)
