"""Prompt components: one small module each, owning its parameters.

A VoP method is a list of component configs (``vop.model.METHODS``); ``COMPONENTS`` maps the
``type`` a saved adapter names back to the class that builds it. The token surgery lives in
``vop.backbone.prompted``; components only say which tokens a layer gets.
"""

from vop.prompts.context import ContextPrompts
from vop.prompts.frame import DeepFramePrompts
from vop.prompts.position import PositionPrompts
from vop.prompts.text import TextPrompts
from vop.prompts.visual import SharedPrompts

COMPONENTS = {
    "text": TextPrompts,
    "visual": SharedPrompts,
    "position": PositionPrompts,
    "context": ContextPrompts,
    "frame": DeepFramePrompts,
}

__all__ = ["COMPONENTS", "ContextPrompts", "DeepFramePrompts", "PositionPrompts", "SharedPrompts", "TextPrompts"]
