"""Text prompts (VoP, paper Eq. 3): ``length`` learned tokens per layer of the text encoder.

Init N(0, 0.02) like the visual prompts (decision: the paper does not state one; small random
tokens perturb the frozen encoder little at step 0 and still break symmetry between tokens).
"""

from __future__ import annotations

import torch
from torch import nn

INIT_STD = 0.02


class TextPrompts(nn.Module):
    role = "text"

    def __init__(self, layers: int, width: int, length: int = 8):
        super().__init__()
        self.length = length
        self.tokens = nn.Parameter(torch.randn(layers, length, width) * INIT_STD)  # [K, n, D]

    @classmethod
    def from_config(cls, c: dict, clip_cfg, frames: int) -> TextPrompts:
        return cls(clip_cfg.text.layers, clip_cfg.text.width, c["text_length"])

    def prompts(self, i: int) -> torch.Tensor | None:
        """Prompt tokens for text layer ``i``: ``[n, D]``."""
        return self.tokens[i] if self.length > 0 else None
