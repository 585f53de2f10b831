"""Non-prompt baselines (``full``, ``bias``, ``proj``, ``partial``, ``adapter-*``).

Each is a component of role ``"backbone"`` (``vop.prompts.base``, registered when imported)
whose ``select(clip)`` returns the backbone tensors it trains (installing adapter modules first
where needed). ``zeroshot`` is simply a method with no components.
"""

from vop.tuning.adapters import AdapterTuning, Bottleneck
from vop.tuning.baselines import BiasTuning, FullTuning, PartialTuning, ProjTuning

__all__ = ["AdapterTuning", "BiasTuning", "Bottleneck", "FullTuning", "PartialTuning", "ProjTuning"]
