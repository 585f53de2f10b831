"""Non-prompt baselines (``full``, ``bias``, ``proj``, ``partial``, ``adapter-*``).

Each is a component whose ``select(clip)`` returns the backbone tensors it trains (installing
adapter modules first where needed). ``zeroshot`` is simply a method with no components.
"""

from vop.tuning.adapters import AdapterTuning, Bottleneck
from vop.tuning.baselines import BiasTuning, FullTuning, PartialTuning, ProjTuning

TUNINGS = {
    "full": FullTuning,
    "bias": BiasTuning,
    "proj": ProjTuning,
    "partial": PartialTuning,
    "adapter": AdapterTuning,
}

__all__ = ["TUNINGS", "AdapterTuning", "BiasTuning", "Bottleneck", "FullTuning", "PartialTuning", "ProjTuning"]
