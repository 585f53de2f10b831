"""Hostile annotation files, configs and resume checkpoints (issue 12): one line naming the file
(and the line where there is one), exit 2 from the CLI, never a traceback or a silent loss."""

from __future__ import annotations

import argparse
import io
import os

import pytest
import torch

from vop.cli import main
from vop.data.annotations import AnnotationError, load_records
from vop.train.checkpoint import CheckpointFileError, check_resume_state, load_checkpoint
from vop.train.config import load_config

TRAIN_CMD = ["--no-progress"]


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_json_nested_100000_levels(tmp_path):
    (tmp_path / "train_data.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(AnnotationError, match=r"train_data.json: invalid JSON \(nested too deeply\)"):
        load_records("didemo", tmp_path, "train")
    (tmp_path / "ann.jsonl").write_text('{"video": "a.mp4", "caption": "x"}\n' + "[" * 100_000 + "\n")
    with pytest.raises(AnnotationError, match=r"ann.jsonl:2: invalid JSON \(nested too deeply\)"):
        load_records("jsonl", tmp_path / "ann.jsonl")


def test_csv_field_over_128_kib(tmp_path):
    path = tmp_path / "ann.csv"
    path.write_text("video,caption\na.mp4,fine\nb.mp4,\"" + "x" * (200 * 1024) + "\"\n")
    with pytest.raises(AnnotationError, match=r"ann.csv:3: unreadable CSV row \(field larger than field limit"):
        load_records("csv", path)


def test_unterminated_quote_is_reported_with_file_and_line(tmp_path):
    path = tmp_path / "ann.csv"
    path.write_text('video,caption\na.mp4,"a dog runs\nb.mp4,a cat sleeps\nc.mp4,"a bird"\nd.mp4,a fish\n')
    with pytest.raises(AnnotationError, match=r"ann.csv:2: a quoted field opened here runs on to line 4"):
        load_records("csv", path)
    # quotes that close on their line are fine, and line numbers stay right after them
    path.write_text('video,caption\na.mp4,"a dog, running"\nb.mp4,a cat\n')
    assert [r.captions for r in load_records("csv", path)] == [["a dog, running"], ["a cat"]]
    path.write_text('video,caption\na.mp4,"a dog"\nb.mp4,\n')
    with pytest.raises(AnnotationError, match=r"ann.csv:3: empty caption"):
        load_records("csv", path)


def test_malformed_yaml_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmodel: {backbone: tiny, method: [vop\noptim:\n  lr: 1\n")
    with pytest.raises(ValueError, match=r"bad.yaml: not valid YAML at line \d+, column \d+"):
        load_config(bad)
    assert main(["train", str(bad), *TRAIN_CMD]) == 2
    assert "bad.yaml: not valid YAML" in _one_line(capsys)
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * 50_000 + "]" * 50_000 + "\n")
    assert main(["train", str(deep), *TRAIN_CMD]) == 2
    assert "deep.yaml: not valid YAML" in _one_line(capsys)
    good = tmp_path / "good.yaml"
    good.write_text("name: x\n")
    assert main(["train", str(good), "--set", "model.overrides.x=[1,", *TRAIN_CMD]) == 2
    assert "--set model.overrides.x: not valid YAML" in _one_line(capsys)


class _Touch:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_load_checkpoint_refuses_objects_garbage_and_wrong_structure(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"config": {}, "payload": _Touch(marker)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointFileError, match=r"evil.pt: holds a Python object \((posix|os).system\)"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()
    torch.save({"x": argparse.Namespace()}, tmp_path / "ns.pt")
    with pytest.raises(CheckpointFileError, match="argparse.Namespace"):
        load_checkpoint(tmp_path / "ns.pt")
    (tmp_path / "junk.pt").write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointFileError, match=r"junk.pt: not a readable torch checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"config": {}, "trainable": {"w": [1, 2]}, "progress": {}, "rng": {}}, tmp_path / "odd.pt")
    with pytest.raises(CheckpointFileError, match=r"odd.pt: 'trainable' holds something other than tensors"):
        check_resume_state(load_checkpoint(tmp_path / "odd.pt"), tmp_path / "odd.pt")
    with pytest.raises(CheckpointFileError, match=r"x.pt: not a vop resume checkpoint \('progress' missing"):
        check_resume_state({"config": {}, "trainable": {}, "rng": {}}, "x.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointFileError, match=r"list.pt: not a vop checkpoint \(holds a list\)"):
        load_checkpoint(tmp_path / "list.pt")


def test_resume_checkpoint_tensors_must_be_stored_in_the_file(tmp_path):
    """The backbone's stored-bytes rule for last.pt: an optimizer state of 10^8 floats as a stride-0
    view of one stored zero (a small file) is refused before anything loads it; a real one passes."""
    from vop.train.checkpoint import rng_state

    def state(exp_avg):
        return {"config": {}, "progress": {"step": 1}, "rng": rng_state(),
                "trainable": {"prompt": torch.randn(4, 8)},
                "optimizer": {"state": {0: {"step": torch.tensor(1.0), "exp_avg": exp_avg}},
                              "param_groups": [{"lr": 1e-3, "params": [0]}]}}

    torch.save(state(torch.randn(4, 8)), tmp_path / "ok.pt")
    check_resume_state(load_checkpoint(tmp_path / "ok.pt"), tmp_path / "ok.pt")
    torch.save(state(torch.zeros(()).expand(10_000, 10_000)), tmp_path / "views.pt")
    assert (tmp_path / "views.pt").stat().st_size < 100_000
    with pytest.raises(CheckpointFileError, match=r"views.pt: its tensors hold [\d,]+ bytes but stand for 4"):
        check_resume_state(load_checkpoint(tmp_path / "views.pt"), tmp_path / "views.pt")
    deep = state(torch.randn(4, 8))
    for _ in range(20):
        deep["optimizer"] = [deep["optimizer"]]
    torch.save(deep, tmp_path / "deep.pt")
    with pytest.raises(CheckpointFileError, match="deep.pt: nested more than 16 levels deep"):
        check_resume_state(load_checkpoint(tmp_path / "deep.pt"), tmp_path / "deep.pt")


def test_resume_from_a_malicious_or_corrupt_last_pt_exits_2(tiny_retrieval_project, capsys):
    from test_train_e2e import write_recipe

    root = tiny_retrieval_project
    recipe = write_recipe(root)
    run_dir = root / "run"
    assert main(["train", str(recipe), "--out", str(run_dir), "--set", "run.max_steps=2", *TRAIN_CMD]) == 0
    capsys.readouterr()
    last = run_dir / "checkpoints" / "last.pt"
    good = last.read_bytes()
    marker = root / "pwned"

    torch.save({"config": {}, "payload": _Touch(marker)}, last)
    assert main(["train", str(recipe), "--out", str(run_dir), "--resume", *TRAIN_CMD]) == 2
    assert "last.pt: holds a Python object" in _one_line(capsys) and not marker.exists()

    last.write_bytes(good[: len(good) // 2])  # cut short
    assert main(["train", str(recipe), "--out", str(run_dir), "--resume", *TRAIN_CMD]) == 2
    assert "last.pt: not a readable torch checkpoint" in _one_line(capsys)

    state = torch.load(io.BytesIO(good), weights_only=True)
    state["progress"] = {"step": 1, "no_such_field": 3}  # structurally damaged
    torch.save(state, last)
    assert main(["train", str(recipe), "--out", str(run_dir), "--resume", *TRAIN_CMD]) == 2
    assert "last.pt: damaged resume checkpoint (TypeError" in _one_line(capsys)

    state = torch.load(io.BytesIO(good), weights_only=True)
    name = min(state["trainable"])
    state["trainable"][name] = torch.full_like(state["trainable"][name], float("nan"))
    torch.save(state, last)
    assert main(["train", str(recipe), "--out", str(run_dir), "--resume", *TRAIN_CMD]) == 2
    assert "non-finite" in _one_line(capsys)

    state = torch.load(io.BytesIO(good), weights_only=True)
    for moments in state["optimizer"]["state"].values():  # 10^8 floats from one stored zero
        moments["exp_avg"] = torch.zeros(()).expand(10_000, 10_000)
    torch.save(state, last)
    assert main(["train", str(recipe), "--out", str(run_dir), "--resume", *TRAIN_CMD]) == 2
    assert "last.pt: its tensors hold" in _one_line(capsys)
