"""Context-specific video prompts (VoP-C): prompts generated from the video itself.

At the input of each prompted layer the F frame [CLS] tokens of a video go through a Context
Modeling Module (CMM: a 1-layer BiLSTM by default, hidden = visual width per direction), and one
linear layer maps each frame's CMM output to ``generated_length`` prompt tokens for that frame;
``shared_length`` learned tokens per layer are added in front. CMM and linear layer are shared by
all layers. The generated tokens are extra tokens: they do not replace [CLS].

CMM choices (config ``cmm``): ``bilstm``, ``lstm`` (one direction) and ``transformer`` (one
encoder layer with a learned frame position embedding, since attention alone is order-blind).
The output linear layer starts at N(0, 0.02) with zero bias so the generated tokens start as
small as the learned ones.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from vop.prompts.base import INIT_STD, PROMPT_RANGE, init_tokens, register_component, shallow_depth

CMM_TYPES = ("bilstm", "lstm", "transformer")


class TransformerCMM(nn.Module):
    """One transformer encoder layer over the frames, with learned frame positions."""

    def __init__(self, width: int, frames: int):
        super().__init__()
        self.pos = init_tokens(frames, width)  # [F, D]
        self.layer = nn.TransformerEncoderLayer(width, max(1, width // 64), 4 * width, dropout=0.0,
                                                batch_first=True, norm_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x + self.pos[: x.shape[1]])  # [B, F, D]


def build_cmm(kind: str, width: int, frames: int) -> tuple[nn.Module, int]:
    """The context module and the width of its output per frame."""
    if kind == "bilstm":
        return nn.LSTM(width, width, num_layers=1, batch_first=True, bidirectional=True), 2 * width
    if kind == "lstm":
        return nn.LSTM(width, width, num_layers=1, batch_first=True), width
    if kind == "transformer":
        return TransformerCMM(width, frames), width
    raise ValueError(f"unknown cmm {kind!r}; choose one of {', '.join(CMM_TYPES)}")


@register_component
class ContextPrompts(nn.Module):
    name, role = "context", "visual"
    defaults: ClassVar[dict] = {"shared_length": 4, "generated_length": 4, "cmm": "bilstm", "shallow_layers": None}
    limits: ClassVar[dict] = {"shared_length": PROMPT_RANGE, "generated_length": PROMPT_RANGE}

    def __init__(self, layers: int, width: int, frames: int, shared_length: int = 4,
                 generated_length: int = 4, cmm: str = "bilstm"):
        super().__init__()
        self.layers, self.width, self.generated_length = layers, width, generated_length
        self.needs_frames = cmm == "transformer"
        self.shared = init_tokens(layers, shared_length, width)  # [K, ns, D]
        self.cmm, out = build_cmm(cmm, width, frames)
        self.generate = nn.Linear(out, generated_length * width)
        nn.init.normal_(self.generate.weight, std=INIT_STD)
        nn.init.zeros_(self.generate.bias)

    @classmethod
    def from_config(cls, c: dict, clip_cfg, frames: int) -> ContextPrompts:
        return cls(shallow_depth(c, clip_cfg), clip_cfg.vision.width, frames,
                   c["shared_length"], c["generated_length"], c["cmm"])

    def prompts(self, i: int, cls: torch.Tensor) -> torch.Tensor | None:
        """``cls`` ``[B, F, D]`` -> ``[B, F, ns + ng, D]``: shared tokens, then generated ones."""
        if i >= self.layers:
            return None
        b, f, d = cls.shape
        ctx = self.cmm(cls.to(self.generate.weight.dtype))
        ctx = ctx[0] if isinstance(ctx, tuple) else ctx  # LSTMs return (output, state): [B, F, out]
        generated = self.generate(ctx).view(b, f, self.generated_length, d)  # [B, F, ng, D]
        shared = self.shared[i].expand(b, f, -1, -1)  # [B, F, ns, D]
        return torch.cat([shared, generated.to(shared.dtype)], dim=2)
