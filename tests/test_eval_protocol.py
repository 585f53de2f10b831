"""Evaluation protocols: multi-caption queries (MSVD), v2t with several correct captions, skipped videos."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from vop.eval.metrics import retrieval_metrics
from vop.eval.retrieval import _restrict, build_queries, format_table, metrics_from_embeddings


def rec(vid, *caps):
    return SimpleNamespace(video_id=vid, captions=list(caps))


def test_every_caption_is_a_query_and_v2t_takes_any_caption():
    records = [rec("a", "a1", "a2", "a3"), rec("b", "b1"), rec("c", "c1", "c2")]
    q = build_queries(records)
    assert q.texts == ["a1", "a2", "a3", "b1", "c1", "c2"]
    assert q.text_to_video == [0, 0, 0, 1, 2, 2]
    assert q.video_to_texts == [[0, 1, 2], [3], [4, 5]]
    assert build_queries(records, captions="first").texts == ["a1", "b1", "c1"]


def test_metrics_from_embeddings_match_the_full_matrix():
    records = [rec(str(i), *[f"{i}-{j}" for j in range(i % 3 + 1)]) for i in range(9)]
    q = build_queries(records)
    g = torch.Generator().manual_seed(0)
    video = torch.nn.functional.normalize(torch.randn(9, 8, generator=g), dim=-1)
    # each caption is its video plus noise, so ranks are informative but not perfect
    text = torch.nn.functional.normalize(video[q.text_to_video] + 0.8 * torch.randn(len(q.texts), 8, generator=g), dim=-1)
    got = metrics_from_embeddings(text, video, q, chunk=2, dsl=True)
    sim = text @ video.T
    assert got["t2v"] == retrieval_metrics(sim, q.text_to_video)
    assert got["v2t"] == retrieval_metrics(sim.T, q.video_to_texts)
    # v2t is at least as good as the best single caption: a video with a perfect caption is rank 1
    assert set(got["dsl"]) == {"t2v", "v2t", "temperature"}
    assert "t2v+DSL" in format_table({**got, "videos": 9, "texts": len(q.texts), "videos_skipped": 0,
                                      "tie": "pessimistic"})


def test_v2t_correct_if_any_caption_is_first():
    # video 0 has two captions: one points elsewhere, one exactly at it -> v2t rank 1
    video = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    text = torch.tensor([[0.6, 0.8], [1.0, 0.0], [0.0, 1.0]])
    q = build_queries([rec("v0", "wrong", "right"), rec("v1", "x")])
    got = metrics_from_embeddings(text, video, q)
    assert got["v2t"]["R@1"] == 100.0  # video 0: its 'right' caption beats everything
    assert got["t2v"]["R@1"] == 2 / 3 * 100  # the "wrong" caption ranks video 1 first


def test_skipped_videos_drop_their_queries():
    q = build_queries([rec("a", "a1", "a2"), rec("b", "b1"), rec("c", "c1")])
    r = _restrict(q, kept=[0, 2])
    assert r.texts == ["a1", "a2", "c1"] and r.text_to_video == [0, 0, 1] and r.video_to_texts == [[0, 1], [2]]


def test_protocols_on_the_real_annotation_files(real_data):
    """MSVD test: every caption is a query; DiDeMo/ActivityNet/MSR-VTT 1k-A: one query per video."""
    from vop.data.annotations import load_records

    msvd = load_records("msvd", real_data / "msvd", "test")
    q = build_queries(msvd)
    assert len(msvd) == 30 and len(q.texts) == sum(len(r.captions) for r in msvd) > 30 * 20
    assert all(len(q.video_to_texts[v]) == len(r.captions) for v, r in enumerate(msvd))
    for name, split, n in (("didemo", "test", 40), ("activitynet", "test", 100), ("msrvtt", "test-1ka", 1000)):
        records = load_records(name, real_data / name, split)
        q = build_queries(records)
        assert len(records) == n and len(q.texts) == n and q.text_to_video == list(range(n))

    # the chunked metrics over MSVD's many captions per video (30 videos x 1328 captions, in 6 chunks)
    q_msvd = build_queries(msvd)
    video = torch.eye(30)
    got = metrics_from_embeddings(video[q_msvd.text_to_video], video, q_msvd, chunk=256)
    assert got["t2v"]["R@1"] == 100.0 and got["v2t"]["R@1"] == 100.0 and got["t2v"]["queries"] == len(q_msvd.texts)
