"""Helpers for checking vop against a reference (tests, equivalence benchmarks); never used at run time."""

from __future__ import annotations

import torch


def perturb_every_parameter(module: torch.nn.Module, seed: int = 0, scale: float = 0.02,
                            vector_scale: float = 0.25) -> torch.Generator:
    """Add ``scale * N(0, 1)`` to every parameter of ``module`` and another ``vector_scale * N(0, 1)``
    to every 1-d one (LayerNorm weights and biases, all biases, the class embedding), in place.

    The rule of every equivalence check: CLIP's default init has unit LayerNorms and zero biases,
    under which ``ln(x)`` and ``ln(ln'(x))`` agree up to eps, so a misplaced or missing norm would
    pass unseen. ``logit_scale`` is left alone (it scales similarities, not embeddings). Returns
    the generator, for callers that draw more values (prompts) from the same stream."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("logit_scale"):
                continue
            p.add_(torch.randn(p.shape, generator=gen) * scale)
            if p.dim() == 1:
                p.add_(torch.randn(p.shape, generator=gen) * vector_scale)
    if hasattr(module, "_sha256"):
        module._sha256 = None  # a CLIP's cached weights hash no longer holds
    return gen
