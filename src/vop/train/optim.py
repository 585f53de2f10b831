"""AdamW over the trainable tensors only, and a warm-up + cosine learning-rate schedule."""

from __future__ import annotations

import math

import torch


def param_groups(named_params: list[tuple[str, torch.nn.Parameter]], weight_decay: float) -> list[dict]:
    """Weight decay on matrices and prompt tables (>= 2-D); none on biases, gains and 1-D vectors.

    Decaying LayerNorm gains or biases pulls them towards zero, which is not a prior anyone
    wants; this is the usual split (GPT-2, CLIP, nanoGPT).
    """
    decay = [p for _, p in named_params if p.requires_grad and p.ndim >= 2]
    no_decay = [p for _, p in named_params if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def build_optimizer(named_params, lr: float, weight_decay: float, betas=(0.9, 0.999), eps: float = 1e-8):
    groups = param_groups(named_params, weight_decay)
    if not groups:
        raise ValueError("nothing to optimise: the method has no trainable parameters")
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps)


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """LR multiplier: linear from 0 to 1 over ``warmup`` steps, then cosine to 0 at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def build_scheduler(optimizer, total_steps: int, warmup_fraction: float):
    warmup = round(warmup_fraction * total_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, total_steps, warmup))
