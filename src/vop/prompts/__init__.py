"""Prompt components: one small module each, owning its parameters.

``vop.prompts.base`` holds the contract every method component follows (prompt or backbone
tuning), the registry ``COMPONENTS`` that maps the ``type`` a method or a saved adapter names to
its class, the shared init and the K^s depth resolution. Each module below registers its class
when imported. The token surgery lives in ``vop.backbone.prompted``; components only say which
tokens a layer gets.
"""

from vop.prompts.base import COMPONENTS, register_component
from vop.prompts.context import ContextPrompts
from vop.prompts.frame import DeepFramePrompts
from vop.prompts.position import PositionPrompts
from vop.prompts.text import TextPrompts
from vop.prompts.visual import SharedPrompts

__all__ = ["COMPONENTS", "ContextPrompts", "DeepFramePrompts", "PositionPrompts", "SharedPrompts", "TextPrompts",
           "register_component"]
