"""The training order: one seeded permutation per epoch, cut into global batches, each global
batch split evenly over the ranks.

Rank ``r`` of ``N`` takes slice ``r`` of every global batch, so the union over ranks of step
``s`` is exactly the batch one process would see at step ``s`` with ``N`` times the per-rank
batch: DDP runs and single-process runs train on the same pairs. The order depends only on
``(seed, epoch)``, which also makes resuming mid-epoch a matter of skipping batches.
"""

from __future__ import annotations

import torch
from torch.utils.data import Sampler


class ShardedEpochSampler(Sampler[int]):
    def __init__(self, num_items: int, global_batch: int, rank: int = 0, world_size: int = 1, seed: int = 0):
        if global_batch % world_size:
            raise ValueError(f"optim.batch_size {global_batch} is not divisible by the {world_size} ranks")
        if num_items < global_batch:
            raise ValueError(f"{num_items} training videos are fewer than one batch of {global_batch}")
        self.num_items, self.global_batch = num_items, global_batch
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.local_batch = global_batch // world_size
        self.epoch, self.start_batch = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        return self.num_items // self.global_batch  # the last partial batch is dropped: ranks must agree

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(self.num_items, generator=g).tolist()
        lo, hi = self.rank * self.local_batch, (self.rank + 1) * self.local_batch
        for b in range(self.start_batch, self.batches_per_epoch):
            yield from perm[b * self.global_batch:(b + 1) * self.global_batch][lo:hi]

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.start_batch) * self.local_batch
