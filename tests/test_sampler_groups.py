"""Group-aware batching (``data.group_batches``): whole groups per global batch, seeded, resumable,
and the ``group`` annotation column that feeds it."""

from __future__ import annotations

import pytest

from vop.data.annotations import load_records
from vop.data.annotations.records import AnnotationError
from vop.train.sampler import ShardedEpochSampler, pack_groups


def pair_labels(n_pairs: int, singles: int = 0) -> list[str]:
    """Records listed like the synthetic data: a clip, then its partner; then some ungrouped ones."""
    return [f"p{i // 2}" for i in range(2 * n_pairs)] + [f"s{i}" for i in range(singles)]


def batches(sampler: ShardedEpochSampler) -> list[list[int]]:
    order = list(sampler)
    return [order[i:i + sampler.local_batch] for i in range(0, len(order), sampler.local_batch)]


def test_pairs_never_split_and_every_item_once():
    labels = pair_labels(25)
    sampler = ShardedEpochSampler(len(labels), 8, seed=3, groups=labels)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        got = batches(sampler)
        assert len(got) == sampler.batches_per_epoch == 6
        assert all(len(b) == 8 for b in got)
        for b in got:  # a label in a batch has both its items there
            assert all(sum(labels[j] == labels[i] for j in b) == 2 for i in b)
        flat = [i for b in got for i in b]
        assert len(set(flat)) == len(flat) == 48


def test_mixed_group_sizes_at_most_one_cut_at_each_batch_edge():
    labels = ["a"] * 3 + ["b"] * 3 + ["c"] * 2 + pair_labels(5) + [f"s{i}" for i in range(7)]
    sampler = ShardedEpochSampler(len(labels), 6, seed=1, groups=labels)
    for epoch in range(4):
        sampler.set_epoch(epoch)
        got = batches(sampler)
        flat = [i for b in got for i in b]
        assert len(set(flat)) == len(flat) == 24
        for b in got:  # a group is cut only where nothing left fits: at most one at each edge
            partial = {labels[i] for i in b if sum(labels[j] == labels[i] for j in b) < labels.count(labels[i])}
            assert len(partial) <= 2


def test_pack_groups_cuts_only_when_nothing_fits():
    # batch 4 and groups of 3: after one group, room 1 and no group of 1 is left -> cut
    order = pack_groups([[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]], 4)
    assert sorted(order) == list(range(12))
    assert order[:4] == [0, 1, 2, 3]


def test_group_larger_than_batch_is_an_error():
    with pytest.raises(ValueError, match="group 'big' has 5 videos"):
        ShardedEpochSampler(10, 4, groups=["big"] * 5 + list("vwxyz"))


def test_same_seed_same_order_other_seed_differs():
    labels = pair_labels(30)

    def order(seed, epoch):
        s = ShardedEpochSampler(len(labels), 8, seed=seed, groups=labels)
        s.set_epoch(epoch)
        return list(s)

    assert order(5, 0) == order(5, 0)
    assert order(5, 0) != order(6, 0)
    assert order(5, 0) != order(5, 1)


def test_resume_position_skips_exactly_the_done_batches():
    labels = pair_labels(20, singles=3)
    full = ShardedEpochSampler(len(labels), 6, seed=2, groups=labels)
    full.set_epoch(1)
    whole = batches(full)
    resumed = ShardedEpochSampler(len(labels), 6, seed=2, groups=labels)
    resumed.set_epoch(1, start_batch=4)
    assert batches(resumed) == whole[4:]
    assert len(resumed) == len(list(resumed))


def test_ranks_split_the_global_batch_of_one_process():
    labels = pair_labels(24)
    single = ShardedEpochSampler(len(labels), 8, seed=9, groups=labels)
    ranks = [ShardedEpochSampler(len(labels), 8, rank=r, world_size=2, seed=9, groups=labels) for r in range(2)]
    for s in [single, *ranks]:
        s.set_epoch(2)
    per_rank = [batches(r) for r in ranks]
    for step, global_batch in enumerate(batches(single)):
        assert per_rank[0][step] + per_rank[1][step] == global_batch


def test_generic_group_column(tmp_path):
    (tmp_path / "train.csv").write_text("video,caption,group\na.mp4,one,p0\na.mp4,two,p0\nb.mp4,three,p0\n"
                                        "c.mp4,four,\n")
    recs = {r.video_id: r for r in load_records("csv", tmp_path, "train", tmp_path)}
    assert (recs["a.mp4"].group, recs["b.mp4"].group, recs["c.mp4"].group) == ("p0", "p0", None)
    (tmp_path / "train.jsonl").write_text('{"video": "a.mp4", "caption": "x", "group": 7}\n'
                                          '{"video": "b.mp4", "caption": "y"}\n')
    recs = load_records("jsonl", tmp_path, "train", tmp_path)
    assert [r.group for r in recs] == ["7", None]


def test_generic_without_group_column_is_unchanged(tmp_path):
    (tmp_path / "train.csv").write_text("video,caption\na.mp4,one\n")
    assert load_records("csv", tmp_path, "train", tmp_path)[0].group is None


def test_conflicting_groups_name_the_line(tmp_path):
    (tmp_path / "train.csv").write_text("video,caption,group\na.mp4,one,p0\na.mp4,two,p1\n")
    with pytest.raises(AnnotationError, match=r"train.csv:3: video 'a.mp4' is in group 'p0' and 'p1'"):
        load_records("csv", tmp_path, "train", tmp_path)
