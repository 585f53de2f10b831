"""Text prompts (VoP, paper Eq. 3): ``length`` learned tokens per layer of the text encoder.

Init N(0, 0.02) like the visual prompts (decision: the paper does not state one; small random
tokens perturb the frozen encoder little at step 0 and still break symmetry between tokens).

``placement`` says where the tokens go (``vop.backbone.prompted`` does the placing):

* ``"paper"`` (default, used for training): all ``length`` tokens before the words, words keep
  their own positions, read-out at EOT.
* ``"modelscope"``: the layout of the authors' released ModelScope port, so that adapters
  imported from it (``vop adapter import modelscope``) give the port's embeddings. The first
  ``prefix_length`` tokens go after SOT and the rest before the last of ``77 - length`` word
  slots; the joined sequence gets CLIP's positional embeddings, and the read-out is at
  ``EOT + length``, which lands after EOT (with 8 prompts: on padding for captions of up to 62
  BPE pieces, on a suffix prompt for 63-66), so in practice only the prefix tokens act.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from vop.prompts.base import PROMPT_RANGE, init_tokens, register_component

PLACEMENTS = ("paper", "modelscope")


@register_component
class TextPrompts(nn.Module):
    name, role = "text", "text"
    defaults: ClassVar[dict] = {"text_length": 8, "text_placement": "paper"}
    optional: ClassVar[tuple] = ("text_prefix_length",)  # modelscope placement: tokens after SOT (default: half)
    limits: ClassVar[dict] = {"text_length": PROMPT_RANGE, "text_prefix_length": PROMPT_RANGE}

    def __init__(self, layers: int, width: int, length: int = 8, placement: str = "paper",
                 prefix_length: int | None = None):
        super().__init__()
        if placement not in PLACEMENTS:
            raise ValueError(f"text_placement must be one of {list(PLACEMENTS)}, got {placement!r}")
        prefix_length = length // 2 if prefix_length is None else int(prefix_length)
        if not 0 <= prefix_length <= length:
            raise ValueError(f"text_prefix_length={prefix_length} is outside 0..text_length={length}")
        self.length, self.placement, self.prefix_length = length, placement, prefix_length
        self.tokens = init_tokens(layers, length, width)  # [K, n, D]

    @classmethod
    def from_config(cls, c: dict, clip_cfg, frames: int) -> TextPrompts:
        room = clip_cfg.text.context_length - 2  # the modelscope layout places its tokens among the word slots
        if c["text_placement"] == "modelscope" and c["text_length"] > room:
            raise ValueError(f"text_length {c['text_length']} with text_placement 'modelscope' leaves no word slots "
                             f"in the backbone's {clip_cfg.text.context_length} positions")
        return cls(clip_cfg.text.layers, clip_cfg.text.width, c["text_length"],
                   c["text_placement"], c.get("text_prefix_length"))

    def prompts(self, i: int) -> torch.Tensor | None:
        """Prompt tokens for text layer ``i``: ``[n, D]``."""
        return self.tokens[i] if self.length > 0 else None
