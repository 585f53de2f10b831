"""`vop demo`: the pair-accuracy measure, and a --quick run end to end through the real CLI."""

from __future__ import annotations

import json

import torch

from vop.demo import pair_accuracy, temporal_breakdown


def _meta(n_pairs: int) -> tuple[dict, list[str]]:
    clips, ids = {}, []
    for i in range(n_pairs):
        for half, other in (("a", "b"), ("b", "a")):
            cid = f"p{i}{half}"
            ids.append(cid)
            clips[cid] = {"id": cid, "partner": f"p{i}{other}", "captions": [
                {"text": f"shape {i} moves {'left' if half == 'a' else 'right'}", "kind": "temporal"},
                {"text": f"shape {i}", "kind": "static"}]}
    return {"by_id": clips}, ids


def test_mean_pooling_of_identical_frame_sets_gets_exactly_chance_pair_accuracy(tiny_clip):
    from vop.model import build_model

    model = build_model(tiny_clip, "zeroshot", frames=4)
    meta, ids = _meta(3)
    base = torch.nn.functional.normalize(torch.randn(3, tiny_clip.cfg.embed_dim), dim=-1)
    video_emb = base.repeat_interleave(2, dim=0)  # a clip and its reverse: the same mean of frames
    out = temporal_breakdown(model, meta, ids, video_emb)
    assert out["pair_accuracy"] == 50.0  # every temporal query ties with its partner: half credit
    assert out["temporal"]["queries"] == 6 and out["static"]["queries"] == 6


def test_pair_accuracy_treats_rounding_gaps_as_ties():
    own = torch.tensor([0.5, 0.5, 0.5, 0.5])
    assert pair_accuracy(own, own - 1e-8) == 50.0  # summation rounding of an order-free method
    assert pair_accuracy(own, own - 1e-3) == 100.0
    assert pair_accuracy(own, own + 1e-3) == 0.0
    assert pair_accuracy(own, torch.tensor([0.4, 0.6, 0.5, 0.5 + 1e-9])) == 50.0  # 1 + 0 + 0.5 + 0.5


def test_quick_demo_runs_end_to_end(tmp_path, capsys):
    from vop.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--quiet", "--methods", "zeroshot", "vop-f", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| zeroshot |" in printed and "| vop-f |" in printed and "vop search" in printed
    summary = json.loads((out / "results.json").read_text())
    rows = {r["method"]: r for r in summary["rows"]}
    assert rows["zeroshot"]["trainable"] == 0 and rows["vop-f"]["trainable"] > 0
    assert 0 < rows["vop-f"]["percent"] < 1
    for r in rows.values():
        assert 0 <= r["t2v_R@1"] <= 100 and 0 <= r["pair_accuracy"] <= 100
    assert (out / "results.md").read_text().count("\n| ") == 3  # header + 2 methods
    assert (out / "results.png").stat().st_size > 1000
    assert (out / "runs" / "vop-f-seed0" / "adapter" / "adapter.safetensors").is_file()
    # a second run reuses the finished runs instead of training again
    assert main(["demo", "--quick", "--quiet", "--methods", "zeroshot", "vop-f", "--out", str(out)]) == 0
    assert "reusing" in capsys.readouterr().out


def test_demo_rejects_unknown_methods(tmp_path, capsys):
    from vop.cli import main

    assert main(["demo", "--quick", "--methods", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown method" in capsys.readouterr().err
