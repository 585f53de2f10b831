"""The loop's parts on their own: loss, optimiser groups, schedule, sharded order, checkpoints,
gradient checkpointing."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import torch
import torch.nn.functional as F

from vop.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from vop.train.loss import contrastive_loss
from vop.train.optim import build_optimizer, param_groups, warmup_cosine
from vop.train.sampler import ShardedEpochSampler


def test_loss_is_symmetric_infonce():
    g = torch.Generator().manual_seed(0)
    t = F.normalize(torch.randn(5, 8, generator=g), dim=-1)
    v = F.normalize(torch.randn(5, 8, generator=g), dim=-1)
    logits = 100.0 * t @ v.T
    # by hand: -log softmax of the diagonal, both ways
    t2v = -torch.log_softmax(logits, dim=1).diagonal().mean()
    v2t = -torch.log_softmax(logits, dim=0).diagonal().mean()
    torch.testing.assert_close(contrastive_loss(t, v, torch.tensor(100.0)), (t2v + v2t) / 2)
    assert contrastive_loss(v, v, 100.0) < 1e-3  # perfectly aligned pairs


def test_weight_decay_only_on_matrices():
    w = torch.nn.Parameter(torch.zeros(3, 4))
    prompts = torch.nn.Parameter(torch.zeros(2, 8, 4))
    bias = torch.nn.Parameter(torch.zeros(4))
    frozen = torch.nn.Parameter(torch.zeros(4, 4), requires_grad=False)
    groups = param_groups([("w", w), ("p", prompts), ("b", bias), ("f", frozen)], 0.2)
    assert [(g["weight_decay"], len(g["params"])) for g in groups] == [(0.2, 2), (0.0, 1)]
    assert groups[1]["params"][0] is bias
    opt = build_optimizer([("w", w), ("b", bias)], lr=1e-3, weight_decay=0.2)
    assert isinstance(opt, torch.optim.AdamW)


def test_warmup_then_cosine():
    total, warm = 100, 10
    lrs = [warmup_cosine(s, total, warm) for s in range(total + 1)]
    assert lrs[0] == 0.1 and lrs[9] == 1.0  # linear warm-up reaches the peak at the last warm-up step
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))  # then never increases
    assert math.isclose(lrs[55], 0.5, abs_tol=1e-9) and lrs[100] == 0.0


def test_ranks_together_see_the_single_process_batches():
    single = ShardedEpochSampler(23, 4, seed=7)
    ranks = [ShardedEpochSampler(23, 4, rank=r, world_size=2, seed=7) for r in range(2)]
    for s in [single, *ranks]:
        s.set_epoch(3)
    one = list(single)
    two = [list(r) for r in ranks]
    assert len(one) == 20  # 5 full batches of 4; the 3 left over are dropped
    for b in range(5):
        assert one[4 * b:4 * b + 4] == two[0][2 * b:2 * b + 2] + two[1][2 * b:2 * b + 2]
    single.set_epoch(4)
    assert list(single) != one  # a new order every epoch
    single.set_epoch(3, start_batch=2)
    assert list(single) == one[8:]  # resuming mid-epoch skips whole batches


def test_checkpoint_loads_with_weights_only_and_restores_rngs(tmp_path):
    state = {"rng": rng_state(), "step": 3}
    expected = (torch.rand(3), np.random.rand(3), random.random())
    save_checkpoint(tmp_path / "c" / "last.pt", state)
    assert not list((tmp_path / "c").glob("*.tmp"))
    loaded = load_checkpoint(tmp_path / "c" / "last.pt")  # torch.load(weights_only=True)
    set_rng_state(loaded["rng"])
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1]) and random.random() == expected[2]


def test_grad_checkpointing_gives_the_same_gradients(tiny_clip):
    from vop.model import build_model

    def grads(checkpointing: bool):
        model = build_model(tiny_clip, "vop", 2, {"text_length": 2, "visual_length": 2}, seed=0)
        model.clip.set_grad_checkpointing(checkpointing)
        g = torch.Generator().manual_seed(1)
        video = torch.randn(3, 2, 3, 32, 32, generator=g)
        tokens = torch.randint(1, 100, (3, 77), generator=g)
        tokens[:, 10] = 49407  # EOT
        tokens[:, 11:] = 0
        loss = contrastive_loss(model.encode_text(tokens), model.encode_video(video), model.logit_scale())
        loss.backward()
        return {n: p.grad.clone() for n, p in model.trainable_named_parameters()}

    plain, ckpt = grads(False), grads(True)
    tiny_clip.set_grad_checkpointing(False)
    assert plain.keys() == ckpt.keys()
    for n in plain:
        assert plain[n].abs().sum() > 0
        torch.testing.assert_close(ckpt[n], plain[n])
