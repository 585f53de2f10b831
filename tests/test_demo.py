"""`vop demo`: pair accuracy, the claims checker, the wall clock, and a --quick run end to end through the CLI."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import time
from dataclasses import replace

import pytest
import torch

from vop_demo import claims
from vop_demo.scoring import pair_accuracy, temporal_breakdown


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
    # strict t2v: the caption's clip ties with its reverse, so a query whose pair ranks first (an
    # order-free hit) is half a hit under expected-value ties, and its rank is half a place better
    # than the pessimistic rule's
    assert out["t2v"]["R@1"] == pytest.approx(out["order_free"]["R@1"] / 2)
    from vop.eval.metrics import retrieval_metrics
    from vop_demo.scoring import caption_scores

    sim, own, _ = caption_scores(model, meta, ids, video_emb)
    assert out["t2v"]["MnR"] == pytest.approx(retrieval_metrics(sim, own.tolist())["MnR"] - 0.5)
    video_emb[1::2] += 1e-8  # float rounding between a clip and its reverse is still a tie
    assert temporal_breakdown(model, meta, ids, video_emb)["t2v"] == out["t2v"]


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
    "clock": {"seconds": 420.0, "source": "measured", "reused": 0, "this_process_seconds": 420.0},
    "runs": [],
}


def test_claims_pass_on_a_passing_result_and_fail_on_each_broken_one():
    assert claims.all_hold([vars(c) for c in claims.check(PASSING)])
    breaks = {
        "G1": lambda s: s["backbone_checks"].update(unseen_tokens=[320]),
        "G2": lambda s: s["backbone_checks"].update(zeroshot_infonce=2.9),
        "G3": lambda s: s["backbone_checks"].update(twin_cosine=0.7),
        "C1": lambda s: s["rows"][2].update({"order_free_R@1": 45.0}),  # vop only +5 over zeroshot
        "C1 ": lambda s: s["rows"][5].update({"order_free_R@1": 39.0}),  # a trained method below zeroshot
        "C2": lambda s: s["rows"][4].update({"pair_accuracy": 65.0}),  # vop-f below 70
        "C2 ": lambda s: s["rows"][4].update({"t2v_R@1": 28.0}),  # vop-f no better than vop on strict R@1
        "C3": lambda s: s["clock"].update(seconds=700.0),
        "K1": lambda s: s["rows"][6].update({"pair_accuracy": 60.0}),
    }
    for cid, brk in breaks.items():
        summary = copy.deepcopy(PASSING)
        brk(summary)
        result = {c.id: c.holds for c in claims.check(summary)}
        assert result[cid.strip()] is False, (cid, result)
        assert all(v for k, v in result.items() if k != cid.strip()), (cid, result)
    # C1 no longer gates on vop/full: 0.55 of full passes, and the ratio is reported beside the paper's
    summary = copy.deepcopy(PASSING)
    summary["rows"][1]["order_free_R@1"] = 100.0
    c1 = next(c for c in claims.check(summary) if c.id == "C1")
    assert c1.holds is True and "vop/full 0.55" in c1.measured and "paper's 0.95" in c1.measured
    # C1 says how far the training seeds' ratios spread
    summary = copy.deepcopy(PASSING)
    summary["runs"] = [{"name": name, "seed": seed, "breakdown": {"order_free": {"R@1": r1}}}
                       for name, seed, r1 in (("vop", 0, 21.0), ("full", 0, 30.0), ("vop", 1, 27.0),
                                              ("full", 1, 30.0), ("vop", 2, 25.0))]  # seed 2: no full run
    c1 = next(c for c in claims.check(summary) if c.id == "C1")
    assert "(per training seed 0.70-0.90)" in c1.measured
    # full beating vop-f/vop-fc on strict R@1 is reported beside the paper's, not gated
    summary = copy.deepcopy(PASSING)
    summary["rows"][1]["t2v_R@1"] = 43.0
    c2 = next(c for c in claims.check(summary) if c.id == "C2")
    assert c2.holds is True and "best of vop-f/fc 42.0 vs full 43.0 (paper 44.6 vs 41.7)" in c2.measured
    # an order-free method off exactly 50 breaks C2 too: it would mean the partner is not the clip reversed
    summary = copy.deepcopy(PASSING)
    summary["rows"][0]["pair_accuracy"] = 50.5
    assert {c.id: c.holds for c in claims.check(summary)}["C2"] is False
    # a missing run is "not checked", which --check counts as failing
    summary = copy.deepcopy(PASSING)
    summary["rows"] = summary["rows"][:3]
    result = [vars(c) for c in claims.check(summary)]
    assert {c["id"]: c["holds"] for c in result}["C2"] is None and not claims.all_hold(result)


def _vop(*args: str) -> subprocess.CompletedProcess:
    """``vop ARGS`` in a fresh process, stdout and stderr pipes (not terminals), as ``vop demo > log``."""
    return subprocess.run([sys.executable, "-m", "vop", *args], capture_output=True, text=True, timeout=600,
                          check=False)


def test_quick_demo_runs_end_to_end(tmp_path):
    out = tmp_path / "demo"
    args = ["demo", "--quick", "--methods", "zeroshot", "vop-f", "vop-f-nopos", "--jobs", "2", "--out", str(out)]
    done = _vop(*args)
    assert done.returncode == 0, done.stderr
    printed = done.stdout
    assert "| zeroshot |" in printed and "| vop-f-nopos |" in printed and "| G1 |" in printed
    assert "vop search" in printed and "best trained adapter on validation" in printed
    assert "test captions that only one of the" in printed
    # not a terminal: no progress bars anywhere, and every line before the table names its run
    assert "\r" not in printed and "\r" not in done.stderr and "it/s]" not in done.stderr
    progress, _, _ = printed.partition("\n\n")
    lines = progress.splitlines()
    assert lines and all(re.match(r"\[(demo|zeroshot|vop-f|vop-f-nopos)\] \S", line) for line in lines), lines
    for run in ("vop-f", "vop-f-nopos"):  # the two runs trained side by side: each step line says whose it is
        assert any(line.startswith(f"[{run}] step 4/4 ") for line in lines), lines
        assert any(line.startswith(f"[{run}] val step 2: ") for line in lines), lines
    summary = json.loads((out / "results.json").read_text())
    rows = {r["method"]: r for r in summary["rows"]}
    assert rows["zeroshot"]["trainable"] == 0 and rows["vop-f"]["trainable"] > rows["vop-f-nopos"]["trainable"] > 0
    assert rows["zeroshot"]["pair_accuracy"] == 50.0  # exact: the partner is the clip's frames reversed
    assert rows["vop-f-nopos"]["pair_accuracy"] == 50.0  # no frame positions: the deep layers see a set
    # an order-free method ties each caption's clip with its reverse: expected ties never score below pessimistic
    assert rows["zeroshot"]["t2v_R@1"] >= rows["zeroshot"]["pessimistic_t2v_R@1"]
    assert {c["id"] for c in summary["claims"]} == {"G1", "G2", "G3", "C1", "C2", "C3", "K1"}
    assert summary["backbone_checks"]["unseen_tokens"] == []  # G1 on the generated world
    example = summary["search_example"]  # over every video `vop index` would index, not the test split only
    assert example["videos"] == len(list((out / "world-0" / "videos").glob("*.mkv")))
    assert 1 <= example["target_rank"] <= example["videos"] and example["target"].startswith("test")
    assert "## Claims" in (out / "results.md").read_text()
    assert (out / "results.png").stat().st_size > 1000
    # the wall clock: measured from the process start to the results written, and recorded with the runs
    clock = summary["clock"]
    assert clock["source"] == "measured" and clock["reused"] == 0
    assert 0 < clock["seconds"] and f"Wall clock {clock['seconds']:.0f} s." in printed
    recorded = json.loads((out / "runs-0" / "clock.json").read_text())
    assert [r["seconds"] for r in recorded.values()] == [clock["seconds"]]
    # a second run reuses every run and reports the clock of the run that trained them, not its own;
    # --check fails: the quick run cannot check C1-C3
    again = _vop(*args, "--check")
    assert again.returncode == 1 and "claims not holding" in again.stderr
    assert "[vop-f] reusing" in again.stdout and "] training ->" not in again.stdout
    clock2 = json.loads((out / "results.json").read_text())["clock"]
    assert clock2["source"] == "recorded" and clock2["seconds"] == clock["seconds"] and clock2["reused"] == 3
    assert "recorded by the `vop demo` that trained these runs" in again.stdout


def test_a_demo_that_trained_only_some_runs_reports_no_wall_clock(tmp_path):
    from vop_demo.clock import demo_clock, recorded, runs_key

    runs = [{"key": "a", "reused": True}, {"key": "b", "reused": False}]
    clock = demo_clock(runs, tmp_path, started=0.0, jobs=1, machine="m")
    assert clock["seconds"] is None and clock["source"] == "not measured" and clock["reused"] == 1
    assert recorded(tmp_path, ["a", "b"]) is None  # nothing recorded for a mixed call
    summary = {**copy.deepcopy(PASSING), "clock": clock}
    c3 = next(c for c in claims.check(summary) if c.id == "C3")
    assert c3.holds is None and "time not measured" in c3.measured  # --check fails on it
    fresh = demo_clock([{"key": "a"}, {"key": "b"}], tmp_path, started=time.time() - 5, jobs=2, machine="m")
    assert fresh["source"] == "measured" and 5 <= fresh["seconds"] < 60
    assert recorded(tmp_path, ["b", "a"])["seconds"] == fresh["seconds"] and runs_key(["a", "b"]) == runs_key(["b", "a"])
    reused = demo_clock([{"key": "a", "reused": True}, {"key": "b", "reused": True}], tmp_path, started=time.time(),
                        jobs=2, machine="m")
    assert reused["source"] == "recorded" and reused["seconds"] == fresh["seconds"]


def test_a_finished_run_is_reused_and_one_scored_by_an_older_version_is_scored_again(tmp_path):
    """The result key = what trained the adapter + how it is scored: a change of scoring alone
    (RESULT_VERSION) re-scores the saved adapter instead of retraining it."""
    from vop_demo.runs import _trained_before, finished_run
    from vop_demo.settings import SETTINGS

    settings = SETTINGS["quick"]
    run_dir = tmp_path / "vop-seed0"
    (run_dir / "adapter").mkdir(parents=True)
    (run_dir / "adapter" / "adapter.json").write_text("{}")
    done = run_dir / "demo_result.json"
    done.write_text(json.dumps({"key": settings.key("vop", 0), "train_key": settings.train_key("vop", 0)}))
    assert finished_run(settings, "vop", 0, tmp_path)["reused"] is True
    done.write_text(json.dumps({"key": "scored-by-an-older-version", "train_key": settings.train_key("vop", 0),
                                "train_seconds": 12.0}))
    assert finished_run(settings, "vop", 0, tmp_path) is None
    assert _trained_before(settings, "vop", 0, tmp_path, None, None)["train_seconds"] == 12.0
    other = replace(settings, updates=settings.updates + 1)  # trained with other settings: train again
    assert _trained_before(other, "vop", 0, tmp_path, None, None) is None
    assert settings.key("vop", 0) != settings.key("vop", 1) != settings.train_key("vop", 1)


def test_labelled_lines_label_every_line_and_turn_carriage_returns_into_lines():
    import io

    from vop_demo.console import LabelledLines, bars_wanted, run_label

    sink = io.StringIO()
    stream = LabelledLines(sink, "vop")
    stream.write("step 50/600 loss 1.2\nval step")
    stream.write(" 50: t2v R@1 3.0\n\nbar 10%\rbar 20%\r")
    stream.write("tail")
    stream.finish()
    assert sink.getvalue().splitlines() == ["[vop] step 50/600 loss 1.2", "[vop] val step 50: t2v R@1 3.0",
                                            "[vop] bar 10%", "[vop] bar 20%", "[vop] tail"]
    assert run_label("vop", 1, [0]) == "vop" and run_label("vop", 1, [0, 1]) == "vop seed 1"
    assert bars_wanted(quiet=False) is False  # pytest's stdout is not a terminal


def test_demo_rejects_unknown_methods(tmp_path, capsys):
    from vop.cli import main

    assert main(["demo", "--quick", "--methods", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown method" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["vop-f-nopos"])
def test_control_run_keeps_frame_positions_at_zero(tiny_clip, name):
    from vop.model import build_model
    from vop_demo.settings import run_spec

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

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "demo" / "probe.py"
    spec = importlib.util.spec_from_file_location("demo_probe", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_demo_probe_trains_a_changed_run_on_validation_and_reuses_it(tmp_path, capsys):
    from vop_demo import settings as R

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
