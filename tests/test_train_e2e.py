"""End to end through the CLI: `vop train` (tiny CLIP, generated videos) then `vop eval` on its
adapter; kill-and-resume gives the same final tensors as an uninterrupted run."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from vop.cli import main

RECIPE = """name: tiny
seed: 0
model: {{backbone: {root}/tiny.safetensors, method: {method}, frames: 4, overrides: {overrides}}}
data: {{dataset: csv, annotations: {root}/ann.csv, videos: {root}/videos, train_split: train,
        val_split: val, test_split: test, image_size: 32}}
optim: {{lr: 1.0e-2, epochs: 3, batch_size: 4}}
eval: {{batch_size: 4}}
run: {{log_every: 1}}
"""


def write_recipe(root, method="vop", overrides="{text_length: 2, visual_length: 2}"):
    path = root / f"{method}.yaml"
    path.write_text(RECIPE.format(root=root, method=method, overrides=overrides))
    return path


def trainable(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["trainable"]


def test_train_then_eval(tiny_retrieval_project, capsys):
    root = tiny_retrieval_project
    run_dir = root / "run"
    assert main(["train", str(write_recipe(root)), "--out", str(run_dir), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "trainable params: 384 || all params:" in out
    for name in ("config.json", "train.log", "metrics.jsonl", "loss.png", "val_r1.png",
                 "adapter/adapter.json", "adapter/adapter.safetensors", "checkpoints/last.pt"):
        assert (run_dir / name).is_file(), name
    config = json.loads((run_dir / "config.json").read_text())
    assert config["optim"]["lr"] == 0.01 and config["data"]["val_split"] == "val"
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "train"] == [1, 2, 3, 4, 5, 6]  # 8 videos / 4 x 3 epochs
    assert [r["step"] for r in rows if r["kind"] == "val"] == [2, 4, 6]
    assert all(r["lr"] >= 0 and r["clips_per_s"] > 0 for r in rows if r["kind"] == "train")
    assert "loss" in (run_dir / "train.log").read_text()

    # the adapter is the best validation checkpoint and it really moved away from the init
    meta = json.loads((run_dir / "adapter" / "adapter.json").read_text())
    val_r1 = [r["t2v"]["R@1"] for r in rows if r["kind"] == "val"]
    assert meta["extra"]["validation"]["t2v"]["R@1"] == max(val_r1)
    assert meta["extra"]["step"] == [r["step"] for r in rows if r["kind"] == "val"][val_r1.index(max(val_r1))]
    from vop.backbone.clip import build_clip
    from vop.model import build_model

    init = dict(build_model(build_clip("tiny", seed=0), "vop", 4, {"text_length": 2, "visual_length": 2},
                            seed=0).trainable_named_parameters())
    final = trainable(run_dir)
    assert set(final) == set(init)
    assert all((final[k] - init[k].detach()).abs().max() > 1e-3 for k in final)

    out_json = root / "eval.json"
    assert main(["eval", "--adapter", str(run_dir / "adapter"), "--dataset", "csv", "--annotations",
                 str(root / "ann.csv"), "--videos", str(root / "videos"), "--split", "test", "--dsl",
                 "--json", str(out_json), "--no-progress"]) == 0
    table = capsys.readouterr().out
    assert "t2v" in table and "v2t+DSL" in table
    result = json.loads(out_json.read_text())
    assert result["videos"] == 2 and result["texts"] == 4 and result["method"] == "vop"
    for d in ("t2v", "v2t"):
        assert set(result[d]) >= {"R@1", "R@5", "R@10", "MdR", "MnR"}
        assert result[d]["R@5"] == 100.0  # two videos: every rank is <= 2
    assert set(result["dsl"]) >= {"t2v", "v2t"}


def test_existing_run_is_not_overwritten(tiny_retrieval_project, capsys):
    root = tiny_retrieval_project
    recipe = write_recipe(root)
    args = ["train", str(recipe), "--out", str(root / "run"), "--no-progress", "--set", "run.max_steps=1"]
    assert main(args) == 0
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err


def test_kill_and_resume_gives_the_same_result(tiny_retrieval_project):
    stop_after = 3  # mid-epoch: epochs are 2 steps, so the resumed run must skip one batch of epoch 1
    root = tiny_retrieval_project
    recipe = write_recipe(root)
    assert main(["train", str(recipe), "--out", str(root / "full"), "--no-progress"]) == 0
    killed = ["train", str(recipe), "--out", str(root / "resumed"), "--no-progress"]
    assert main(killed + ["--set", f"run.stop_after={stop_after}"]) == 3  # "killed" after the checkpoint
    state = torch.load(root / "resumed" / "checkpoints" / "last.pt", weights_only=True)
    assert state["progress"]["step"] == stop_after
    assert main(killed + ["--resume"]) == 0

    a, b = trainable(root / "full"), trainable(root / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    fa = load_file(root / "full" / "adapter" / "adapter.safetensors")
    fb = load_file(root / "resumed" / "adapter" / "adapter.safetensors")
    assert fa.keys() == fb.keys() and all(torch.equal(fa[k], fb[k]) for k in fa)
    rows_a = (root / "full" / "metrics.jsonl").read_text().splitlines()
    rows_b = (root / "resumed" / "metrics.jsonl").read_text().splitlines()
    strip = lambda rows: [{k: v for k, v in json.loads(r).items() if k != "clips_per_s"} for r in rows]
    assert strip(rows_a) == strip(rows_b)


def test_resume_under_another_selection_score_is_refused(tiny_retrieval_project, capsys):
    """The best score so far was measured by the checkpoint's eval.select: another would not compare."""
    root = tiny_retrieval_project
    args = ["train", str(write_recipe(root)), "--out", str(root / "run"), "--no-progress"]
    assert main(args + ["--set", "run.stop_after=2"]) == 3
    capsys.readouterr()
    assert main(args + ["--resume", "--set", "eval.select=rsum"]) == 2
    err = capsys.readouterr().err
    assert "last.pt" in err and "eval.select=t2v_R@1" in err and "rsum" in err
    assert main(args + ["--resume"]) == 0  # the same score: resumes


def test_zeroshot_recipe_only_validates(tiny_retrieval_project, capsys):
    root = tiny_retrieval_project
    assert main(["train", str(write_recipe(root, "zeroshot", "{}")), "--out", str(root / "zs"), "--no-progress"]) == 0
    assert "nothing to train" in capsys.readouterr().out
    assert (root / "zs" / "adapter" / "adapter.json").is_file()


def test_eval_skips_an_undecodable_video_with_its_queries(tiny_retrieval_project, capsys):
    root = tiny_retrieval_project
    (root / "videos" / "v3.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    out_json = root / "zs.json"
    assert main(["eval", "--method", "zeroshot", "--backbone", str(root / "tiny.safetensors"), "--frames", "4",
                 "--dataset", "csv", "--annotations", str(root / "ann.csv"), "--videos", str(root / "videos"),
                 "--split", "all", "--json", str(out_json), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "v3.mp4" in captured.err and "1 undecodable videos SKIPPED" in captured.out
    result = json.loads(out_json.read_text())
    assert (result["videos"], result["texts"], result["videos_skipped"]) == (11, 22, 1)
    assert result["method"] == "zeroshot" and result["t2v"]["queries"] == 22


def test_adapter_selected_by_the_configured_validation_score(tiny_retrieval_project, capsys):
    """``eval.select: rsum`` keeps the step with the best R@1+R@5+R@10 of both directions and says so."""
    from vop.eval.metrics import SELECT_SCORES

    root = tiny_retrieval_project
    recipe = write_recipe(root)
    recipe.write_text(recipe.read_text().replace("eval: {batch_size: 4}", "eval: {batch_size: 4, select: rsum}"))
    run_dir = root / "run-rsum"
    assert main(["train", str(recipe), "--out", str(run_dir), "--no-progress"]) == 0
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in rows if r["kind"] == "val"]
    scores = [SELECT_SCORES["rsum"](r) for r in val]
    assert [r["rsum"] for r in val] == scores
    meta = json.loads((run_dir / "adapter" / "adapter.json").read_text())
    assert meta["extra"]["selected_on"] == "validation rsum"
    assert meta["extra"]["step"] == val[scores.index(max(scores))]["step"]
    assert "best validation rsum" in (run_dir / "train.log").read_text()

    recipe.write_text(recipe.read_text().replace("select: rsum", "select: loss"))
    assert main(["train", str(recipe), "--out", str(root / "run-bad"), "--no-progress"]) == 2
    assert "eval.select must be one of t2v_R@1, t2v_rsum, rsum" in capsys.readouterr().err
