"""Function-specific prompts (VoP-F): inter-frame deep layers.

Layers ``shallow_layers``..K-1 of the vision encoder (0-based) run one sequence per video,
``[F CLS, video prompts, F x P patches]``, with the same frozen weights. Before the first of them
a trainable frame positional embedding (one vector per frame index, zero-init so the start
differs from CLIP only through the prompts) is added to every token of a frame. Each deep layer
gets ``video_length`` fresh video-level prompt tokens. With ``shallow_layers == K`` there are no
deep layers and no parameters: the method reduces to its shallow prompts. ``frame_position:
false`` keeps the frame positional embedding at zero (not trained): the deep layers then see the
frames as an unordered set, a control for where the order signal comes from.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from vop.prompts.base import K_S, PROMPT_RANGE, init_tokens, register_component, shallow_depth


@register_component
class DeepFramePrompts(nn.Module):
    name, role = "frame", "deep"
    defaults: ClassVar[dict] = {"video_length": 8, "shallow_layers": K_S, "frame_position": True}
    limits: ClassVar[dict] = {"video_length": PROMPT_RANGE}
    needs_frames = True  # one positional vector per frame index

    def __init__(self, layers: int, start: int, width: int, frames: int, video_length: int = 8,
                 frame_position: bool = True):
        super().__init__()
        self.start = start
        deep = layers - start
        self.video = init_tokens(deep, video_length, width) if deep else None  # [K-Ks, n, D]
        if deep and not frame_position:  # a control: frames enter the deep layers without any order signal
            self.register_buffer("frame_pos", torch.zeros(frames, width), persistent=False)
        else:
            self.frame_pos = nn.Parameter(torch.zeros(frames, width)) if deep else None  # [F, D]

    @classmethod
    def from_config(cls, c: dict, clip_cfg, frames: int) -> DeepFramePrompts:
        v = clip_cfg.vision
        return cls(v.layers, shallow_depth(c, clip_cfg), v.width, frames, c["video_length"], c["frame_position"])

    def prompts(self, i: int) -> torch.Tensor | None:
        """Video-level tokens for deep layer ``i`` (absolute index): ``[n, D]``."""
        if self.video is None or self.video.shape[1] == 0:
            return None
        return self.video[i - self.start]
