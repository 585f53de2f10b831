"""The training order: one seeded permutation per epoch, cut into global batches, each global
batch split evenly over the ranks.

Rank ``r`` of ``N`` takes slice ``r`` of every global batch, so the union over ranks of step
``s`` is exactly the batch one process would see at step ``s`` with ``N`` times the per-rank
batch: DDP runs and single-process runs train on the same pairs. The order depends only on
``(seed, epoch)``, which also makes resuming mid-epoch a matter of skipping batches.

With ``groups`` (``data.group_batches``), the permutation shuffles groups instead of items and
packs them first-fit into global batches, so the members of a group (a clip and its
time-reversed copy, say) land in one global batch and serve as each other's in-batch negatives.
Under DDP a group may still straddle two ranks' slices of that batch; the loss gathers every
rank's embeddings, so the group's members still meet in one InfoNCE matrix. A group is cut only
where no remaining group fits the space left in a batch (never for pairs and an even batch);
a group larger than the global batch is an error.
"""

from __future__ import annotations

import torch
from torch.utils.data import Sampler


class ShardedEpochSampler(Sampler[int]):
    def __init__(self, num_items: int, global_batch: int, rank: int = 0, world_size: int = 1, seed: int = 0,
                 groups: list | None = None):
        if global_batch % world_size:
            raise ValueError(f"optim.batch_size {global_batch} is not divisible by the {world_size} ranks")
        if num_items < global_batch:
            raise ValueError(f"{num_items} training videos are fewer than one batch of {global_batch}")
        self.num_items, self.global_batch = num_items, global_batch
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.local_batch = global_batch // world_size
        self.epoch, self.start_batch = 0, 0
        self.groups = None if groups is None else group_members(groups, num_items, global_batch)

    @property
    def batches_per_epoch(self) -> int:
        return self.num_items // self.global_batch  # the last partial batch is dropped: ranks must agree

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        if self.groups is None:
            perm = torch.randperm(self.num_items, generator=g).tolist()
        else:
            order = torch.randperm(len(self.groups), generator=g).tolist()
            perm = pack_groups([self.groups[i] for i in order], self.global_batch)
        lo, hi = self.rank * self.local_batch, (self.rank + 1) * self.local_batch
        for b in range(self.start_batch, self.batches_per_epoch):
            yield from perm[b * self.global_batch:(b + 1) * self.global_batch][lo:hi]

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.start_batch) * self.local_batch


def group_members(groups: list, num_items: int, global_batch: int) -> list[list[int]]:
    """Item indices of each group, groups in order of first appearance (``groups[i]`` is item i's)."""
    if len(groups) != num_items:
        raise ValueError(f"{len(groups)} group labels for {num_items} training videos")
    members: dict = {}
    for i, name in enumerate(groups):
        members.setdefault(name, []).append(i)
    too_big = [(name, len(m)) for name, m in members.items() if len(m) > global_batch]
    if too_big:
        name, size = too_big[0]
        raise ValueError(f"group {name!r} has {size} videos, more than the global batch {global_batch} "
                         "(data.group_batches keeps a group in one batch)")
    return list(members.values())


def pack_groups(groups: list[list[int]], global_batch: int) -> list[int]:
    """Flat item order whose every ``global_batch`` slice holds whole groups, taken first-fit in
    the given order; where nothing left fits, the first remaining group is cut to fill the batch."""
    queue, out = list(groups), []
    while queue:
        room, skipped, taken = global_batch, [], 0
        for i, group in enumerate(queue):
            if len(group) <= room:
                out += group
                room -= len(group)
            else:
                skipped.append(group)
            taken = i + 1
            if room == 0:
                break
        rest = skipped + queue[taken:]
        if room and rest:  # nothing fits: cut one group rather than leave the batch short
            out += rest[0][:room]
            rest[0] = rest[0][room:]
        queue = rest
    return out
