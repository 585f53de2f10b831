"""`vop demo`: pair accuracy, the claims checker, and a --quick run end to end through the CLI."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from vop.demo import claims
from vop.demo.run import pair_accuracy, temporal_breakdown


def _meta(n_pairs: int) -> tuple[dict, list[str]]:
    clips, ids = {}, []
    for i in range(n_pairs):
        for half, other in (("a", "b"), ("b", "a")):
            cid = f"p{i}{half}"
            ids.append(cid)
            clips[cid] = {"id": cid, "partner": f"p{i}{other}",
                          "captions": [f"shape {i} moves {'left' if half == 'a' else 'right'}"]}
    return {"by_id": clips}, ids


def test_mean_pooling_of_identical_frame_sets_gets_exactly_chance_pair_accuracy(tiny_clip):
    from vop.model import build_model

    model = build_model(tiny_clip, "zeroshot", frames=4)
    meta, ids = _meta(3)
    base = torch.nn.functional.normalize(torch.randn(3, tiny_clip.cfg.embed_dim), dim=-1)
    video_emb = base.repeat_interleave(2, dim=0)  # a clip and its reverse: the same mean of frames
    out = temporal_breakdown(model, meta, ids, video_emb)
    assert out["pair_accuracy"] == 50.0  # every caption ties with its partner: half credit
    assert out["order_free"]["queries"] == 6


def test_pair_accuracy_treats_rounding_gaps_as_ties():
    own = torch.tensor([0.5, 0.5, 0.5, 0.5])
    assert pair_accuracy(own, own - 1e-8) == 50.0  # summation rounding of an order-free method
    assert pair_accuracy(own, own - 1e-3) == 100.0
    assert pair_accuracy(own, own + 1e-3) == 0.0
    assert pair_accuracy(own, torch.tensor([0.4, 0.6, 0.5, 0.5 + 1e-9])) == 50.0  # 1 + 0 + 0.5 + 0.5


def _row(method, trainable, percent, order_free, pair, t2v):
    return {"method": method, "seeds": [0], "trainable": trainable, "percent": percent,
            "order_free_R@1": order_free, "pair_accuracy": pair, "t2v_R@1": t2v}


PASSING = {
    "backbone_checks": {"unseen_tokens": [], "caption_tokens": 40, "zeroshot_infonce": 1.9, "infonce_batch": 16,
                        "logit_scale": 23.0, "twin_cosine": 0.5, "still_direction_accuracy": 97.0},
    "rows": [_row("zeroshot", 0, 0, 40.0, 50.0, 20.0), _row("full", 10**6, 100, 60.0, 50.0, 30.0),
             _row("vop", 6000, 0.15, 55.0, 50.0, 28.0), _row("vop-p", 20000, 0.5, 56.0, 85.0, 45.0),
             _row("vop-f", 7000, 0.17, 57.0, 75.0, 40.0), _row("vop-fc", 90000, 2.2, 58.0, 78.0, 42.0),
             _row("vop-f-nopos", 6500, 0.16, 55.0, 50.0, 28.0)],
    "settings": {"seeds": [0], "jobs": 2},
    "total_seconds": 420.0,
    "runs": [{"train_seconds": 120.0, "reused": False}] * 6,
}


def test_claims_pass_on_a_passing_result_and_fail_on_each_broken_one():
    assert claims.all_hold([vars(c) for c in claims.check(PASSING)])
    breaks = {
        "G1": lambda s: s["backbone_checks"].update(unseen_tokens=[320]),
        "G2": lambda s: s["backbone_checks"].update(zeroshot_infonce=2.9),
        "G3": lambda s: s["backbone_checks"].update(twin_cosine=0.7),
        "C1": lambda s: s["rows"][2].update({"order_free_R@1": 45.0}),  # vop only +5 over zeroshot
        "C2": lambda s: s["rows"][4].update({"pair_accuracy": 65.0}),  # vop-f below 70
        "C3": lambda s: s.update(total_seconds=700.0),
        # reused runs count with the time they took, shared by the jobs: 420 + 6 * 120 / 2 s > 10 min
        "C3 ": lambda s: s.update(runs=[{"train_seconds": 120.0, "reused": True}] * 6),
        "K1": lambda s: s["rows"][6].update({"pair_accuracy": 60.0}),
    }
    for cid, brk in breaks.items():
        summary = copy.deepcopy(PASSING)
        brk(summary)
        result = {c.id: c.holds for c in claims.check(summary)}
        assert result[cid.strip()] is False, (cid, result)
        assert all(v for k, v in result.items() if k != cid.strip()), (cid, result)
    # C1 says how far the training seeds' ratios spread (the claim itself is on the means)
    summary = copy.deepcopy(PASSING)
    summary["runs"] = [{"name": name, "seed": seed, "breakdown": {"order_free": {"R@1": r1}}}
                       for name, seed, r1 in (("vop", 0, 21.0), ("full", 0, 30.0), ("vop", 1, 27.0),
                                              ("full", 1, 30.0), ("vop", 2, 25.0))]  # seed 2: no full run
    c1 = next(c for c in claims.check(summary) if c.id == "C1")
    assert "per training seed 0.70-0.90)" in c1.measured
    # an order-free method off exactly 50 breaks C2 too: it would mean the partner is not the clip reversed
    summary = copy.deepcopy(PASSING)
    summary["rows"][0]["pair_accuracy"] = 50.5
    assert {c.id: c.holds for c in claims.check(summary)}["C2"] is False
    # a missing run is "not checked", which --check counts as failing
    summary = copy.deepcopy(PASSING)
    summary["rows"] = summary["rows"][:3]
    result = [vars(c) for c in claims.check(summary)]
    assert {c["id"]: c["holds"] for c in result}["C2"] is None and not claims.all_hold(result)


def test_quick_demo_runs_end_to_end(tmp_path, capsys):
    from vop.cli import main

    out = tmp_path / "demo"
    args = ["demo", "--quick", "--quiet", "--methods", "zeroshot", "vop-f", "vop-f-nopos", "--jobs", "2",
            "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| zeroshot |" in printed and "| vop-f-nopos |" in printed and "| G1 |" in printed
    assert "vop search" in printed and "best trained adapter on validation" in printed
    assert "test captions that only one of the" in printed
    summary = json.loads((out / "results.json").read_text())
    rows = {r["method"]: r for r in summary["rows"]}
    assert rows["zeroshot"]["trainable"] == 0 and rows["vop-f"]["trainable"] > rows["vop-f-nopos"]["trainable"] > 0
    assert rows["zeroshot"]["pair_accuracy"] == 50.0  # exact: the partner is the clip's frames reversed
    assert rows["vop-f-nopos"]["pair_accuracy"] == 50.0  # no frame positions: the deep layers see a set
    assert {c["id"] for c in summary["claims"]} == {"G1", "G2", "G3", "C1", "C2", "C3", "K1"}
    assert summary["backbone_checks"]["unseen_tokens"] == []  # G1 on the generated world
    example = summary["search_example"]  # over every video `vop index` would index, not the test split only
    assert example["videos"] == len(list((out / "world-0" / "videos").glob("*.mkv")))
    assert 1 <= example["target_rank"] <= example["videos"] and example["target"].startswith("test")
    assert "## Claims" in (out / "results.md").read_text()
    assert (out / "results.png").stat().st_size > 1000
    # a second run reuses the finished runs; --check fails: the quick run cannot check C1-C3
    assert main([*args, "--check"]) == 1
    captured = capsys.readouterr()
    assert "reusing" in captured.out and "claims not holding" in captured.err


def test_demo_rejects_unknown_methods(tmp_path, capsys):
    from vop.cli import main

    assert main(["demo", "--quick", "--methods", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown method" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["vop-f-nopos"])
def test_control_run_keeps_frame_positions_at_zero(tiny_clip, name):
    from vop.demo.run import run_spec
    from vop.model import build_model

    spec = run_spec(name)
    model = build_model(tiny_clip, spec.method, frames=4, overrides={**dict(spec.overrides), "shallow_layers": 1})
    names = [n for n, _ in model.trainable_named_parameters()]
    assert not any("frame_pos" in n for n in names) and any("video" in n for n in names)
    video = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():  # frames as a set: reversing them changes nothing but rounding
        torch.testing.assert_close(model.encode_video(video), model.encode_video(video.flip(1)), atol=1e-5, rtol=0)


def _demo_probe():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "demo_probe.py"
    spec = importlib.util.spec_from_file_location("demo_probe", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_demo_probe_trains_a_changed_run_on_validation_and_reuses_it(tmp_path, capsys):
    from vop.demo import run as R

    probe = _demo_probe()
    tiny = ["--set", "pairs=[6,4,4]", "updates=4", "batch_size=4", "validate_every=2"]
    args = ["--methods", "zeroshot", "vop", *tiny, "--method-set", "text_length=4", "--world", "blur_steps=0",
            "--jobs", "1", "--out-dir", str(tmp_path / "p"), "--json", str(tmp_path / "rows.json")]
    runs_before, backbone_before = dict(R.RUNS), R.BACKBONE
    assert probe.main(args) == 0
    assert dict(R.RUNS) == runs_before and R.BACKBONE == backbone_before  # nothing left registered
    out = json.loads((tmp_path / "rows.json").read_text())
    zeroshot, vop = out["rows"]
    assert zeroshot["run"] == "zeroshot" and zeroshot["trainable_percent"] == 0 and zeroshot["overrides"] == {}
    assert vop["run"] == "vop text_length=4" and vop["overrides"] == {"text_length": 4}
    assert 0 < vop["trainable_percent"] < 0.5 and vop["val_pair_accuracy"] == 50.0
    assert out["world"] == {"blur_steps": 0} and out["vop_over_full"] is None
    assert out["updates"] == 4 and out["lr"] == R.SETTINGS["full"].lr  # what the runs trained with
    (world,) = (tmp_path / "p").glob("world-*")
    assert json.loads((world / "metadata.json").read_text())["spec"]["blur_steps"] == 0
    capsys.readouterr()
    assert probe.main(args) == 0  # the same probe again: both runs reused, the same numbers
    assert "(reused)" in capsys.readouterr().out
    assert json.loads((tmp_path / "rows.json").read_text())["rows"][1]["val_score"] == vop["val_score"]
    # another training setting trains in its own folder and leaves the first probe's runs alone
    other = [a if a != "updates=4" else "updates=2" for a in args]
    assert probe.main(other) == 0
    assert "(reused)" not in capsys.readouterr().out
    assert len(list((tmp_path / "p").glob("runs-*"))) == 2
    assert probe.main(args) == 0 and "(reused)" in capsys.readouterr().out


@pytest.mark.parametrize("bad, message", [
    (["--set", "nope=1"], "unknown setting"),
    (["--world", "frames=8"], "unknown or fixed"),
    (["--world", "blur_steps=9"], "blur_steps must be 0..3"),
    (["--methods", "vop", "--method-set", "nope=1"], "does not apply"),
    (["--set", "updates"], "expected KEY=VALUE"),
])
def test_demo_probe_rejects_bad_changes_before_any_work(tmp_path, bad, message):
    with pytest.raises(SystemExit, match=message):
        _demo_probe().main([*bad, "--out-dir", str(tmp_path)])
    assert not any(tmp_path.iterdir())
