"""Annotation readers on the real files in tests/data and on small malformed files.

The MSVD, DiDeMo and ActivityNet files there are cut to their first videos (tests/data/README.md);
test_full_data.py checks the same readers on the full files when VOP_SHARED_DATA is set."""

from __future__ import annotations

import json
import shutil

import pytest

from vop.data.annotations import (
    AnnotationError,
    MissingAnnotationError,
    check_dataset,
    holdout_ids,
    load_records,
)


def test_msrvtt_1ka_test_split(real_data):
    records = load_records("msrvtt", real_data / "msrvtt", split="test-1ka")
    assert len(records) == 1000
    assert len({r.video_id for r in records}) == 1000
    assert all(len(r.captions) == 1 and r.split == "test-1ka" for r in records)
    assert records[0].video_id == "video9770"
    assert records[0].captions == ["a person is connecting something to system"]
    assert records[0].path is None  # no videos folder given


def test_msrvtt_semicolon_crlf_copy_reads_identically(real_data, tmp_path):
    # decision: a ';'-delimited CRLF copy is sniffed and read, not rejected
    shutil.copy(real_data / "msrvtt" / "MSRVTT_JSFUSION_test.semicolon_crlf.csv",
                tmp_path / "MSRVTT_JSFUSION_test.csv")
    dirty = load_records("msrvtt", tmp_path, split="test-1ka")
    clean = load_records("msrvtt", real_data / "msrvtt", split="test-1ka")
    assert [(r.video_id, r.captions) for r in dirty] == [(r.video_id, r.captions) for r in clean]
    assert not any("\r" in c for r in dirty for c in r.captions)


def test_msrvtt_train_needs_data_json_but_lists_validate(real_data):
    with pytest.raises(MissingAnnotationError, match="MSRVTT_data.json") as info:
        load_records("msrvtt", real_data / "msrvtt", split="train-9k")
    assert "9000 videos" in str(info.value)
    report = check_dataset("msrvtt", real_data / "msrvtt")
    assert report["splits"]["test-1ka"]["records"] == 1000
    assert "9000 videos" in report["splits"]["train-9k"]["error"]
    assert "7010 videos" in report["splits"]["train-7k"]["error"]
    assert any("MSRVTT_data.json" in p for p in report["problems"])


@pytest.fixture()
def msrvtt_with_captions(real_data, tmp_path):
    """The real split lists plus a small stand-in MSRVTT_data.json (two captions per video)."""
    for name in ("MSRVTT_train.9k.csv", "MSRVTT_train.7k.csv", "MSRVTT_JSFUSION_test.csv"):
        shutil.copy(real_data / "msrvtt" / name, tmp_path / name)
    sentences = [{"video_id": f"video{i}", "caption": f"caption {k} of video {i}", "sen_id": 2 * i + k}
                 for i in range(10000) for k in range(2)]
    (tmp_path / "MSRVTT_data.json").write_text(json.dumps({"videos": [], "sentences": sentences}))
    return tmp_path


def test_msrvtt_train_splits_and_heldout_val(msrvtt_with_captions):
    root = msrvtt_with_captions
    train9 = load_records("msrvtt", root, split="train-9k")
    train7 = load_records("msrvtt", root, split="train-7k")
    assert (len(train9), len(train7)) == (9000, 7010)
    assert train9[0].captions == ["caption 0 of video 0", "caption 1 of video 0"]
    val = {r.video_id for r in load_records("msrvtt", root, split="val")}
    rest = {r.video_id for r in load_records("msrvtt", root, split="train-9k-noval")}
    assert len(val) == 450 and not (val & rest) and val | rest == {r.video_id for r in train9}
    test = {r.video_id for r in load_records("msrvtt", root, split="test-1ka")}
    assert not (val & test)


def test_holdout_is_deterministic_and_order_free():
    ids = [f"v{i}" for i in range(1000)]
    assert holdout_ids(ids) == holdout_ids(list(reversed(ids)))
    assert len(holdout_ids(ids)) == 50


def test_msvd_every_caption_kept(real_data):
    captions = json.loads((real_data / "msvd" / "captions_msvd.json").read_text())
    for split, count in (("train", 60), ("val", 10), ("test", 30)):
        records = load_records("msvd", real_data / "msvd", split=split)
        assert len(records) == count
    test = load_records("msvd", real_data / "msvd", split="test")
    expected = sum(len(captions[r.video_id]) for r in test)
    assert sum(len(r.captions) for r in test) == expected == 1328  # every caption becomes a query
    assert test[0].video_id == "eyhzdC936uk_15_27"
    assert test[0].captions == [c.strip() for c in captions["eyhzdC936uk_15_27"]]


def test_didemo_paragraphs(real_data):
    for split, videos in (("test", 40), ("val", 40)):
        data = json.loads((real_data / "didemo" / f"{split}_data.json").read_text())
        records = load_records("didemo", real_data / "didemo", split=split)
        assert len(records) == videos == len({a["video"] for a in data})
        words = sum(len(a["description"].split()) for a in data)
        assert sum(len(r.captions[0].split()) for r in records) == words
        assert all(len(r.captions) == 1 for r in records)


def test_didemo_paragraph_is_in_temporal_order(tmp_path):
    anns = [{"video": "a.mp4", "description": "second.", "times": [[3, 3], [2, 4]], "annotation_id": 1},
            {"video": "a.mp4", "description": "first.", "times": [[0, 0], [1, 1]], "annotation_id": 2}]
    (tmp_path / "test_data.json").write_text(json.dumps(anns))
    (record,) = load_records("didemo", tmp_path, split="test")
    assert record.captions == ["first. second."]


def test_activitynet_paragraphs(real_data):
    data = json.loads((real_data / "activitynet" / "val_1.json").read_text())
    records = load_records("activitynet", real_data / "activitynet", split="test")
    assert len(records) == len(data) == 100
    assert sum(len(v["sentences"]) for v in data.values()) == 371
    first = records[0]
    assert first.video_id == "v_uqiMw7tQ1Cc"
    assert first.captions[0].startswith("A weight lifting tutorial is given. The coach helps")
    with pytest.raises(MissingAnnotationError, match="train.json"):
        load_records("activitynet", real_data / "activitynet", split="train")


def test_activitynet_sorts_sentences_by_start(tmp_path):
    data = {"v_x": {"duration": 9, "timestamps": [[5, 9], [0, 4]], "sentences": [" later.", "earlier."]}}
    (tmp_path / "val_1.json").write_text(json.dumps(data))
    (record,) = load_records("activitynet", tmp_path, split="test")
    assert record.captions == ["earlier. later."]


def test_lsmdc_tab_separated(tmp_path):
    rows = ["0001_Movie_00.00.01.000-00.00.02.000\t00:00:01\t00:00:02\t00:00:01\t00:00:02\tSOMEONE opens a door.",
            "0001_Movie_00.00.03.000-00.00.04.000\t0\t0\t0\t0\tHe says \"hi\", smiling.",
            "0001_Movie_00.00.03.000-00.00.04.000\t0\t0\t0\t0\tA second sentence."]
    (tmp_path / "LSMDC16_challenge_1000_publictect.csv").write_text("\n".join(rows) + "\n")
    videos = tmp_path / "videos" / "0001_Movie"
    videos.mkdir(parents=True)
    (videos / "0001_Movie_00.00.01.000-00.00.02.000.avi").write_bytes(b"")
    records = load_records("lsmdc", tmp_path, split="test", videos_dir=tmp_path / "videos")
    assert [r.captions for r in records] == [["SOMEONE opens a door."], ['He says "hi", smiling.', "A second sentence."]]
    assert records[0].path == videos / "0001_Movie_00.00.01.000-00.00.02.000.avi"
    assert records[1].path is None


def test_lsmdc_wrong_delimiter_names_file_and_line(tmp_path):
    path = tmp_path / "LSMDC16_challenge_1000_publictect.csv"
    path.write_text("clip,0,0,0,0,a sentence\n")
    with pytest.raises(AnnotationError, match=r"publictect\.csv:1: .*tab-separated"):
        load_records("lsmdc", tmp_path, split="test")


def test_generic_csv_groups_captions_and_resolves_paths(tmp_path):
    videos = tmp_path / "videos"
    (videos / "sub").mkdir(parents=True)
    (videos / "sub" / "a.mp4").write_bytes(b"")
    absolute = tmp_path / "elsewhere.mp4"
    absolute.write_bytes(b"")
    ann = tmp_path / "ann.csv"
    ann.write_text(f"video,caption\nsub/a.mp4,a dog runs\n{absolute},a cat sleeps\nsub/a.mp4,\"a dog, running\"\n")
    records = load_records("csv", ann, videos_dir=videos)
    assert [(r.video_id, r.captions) for r in records] == [
        ("sub/a.mp4", ["a dog runs", "a dog, running"]), (str(absolute), ["a cat sleeps"])]
    assert records[0].path == videos / "sub" / "a.mp4" and records[1].path == absolute


@pytest.mark.parametrize("text, match", [
    ("video,text\na.mp4,x\n", r"ann\.csv:1: missing column\(s\) video, caption"),
    ("video;caption\na.mp4;x\nb.mp4;\n", r"ann\.csv:3: empty caption"),
    ("video|caption\na.mp4,x\n", r"ann\.csv:2: expected 2 fields"),
    ("videocaption\n", r"ann\.csv:1: .*wrong delimiter"),
])
def test_generic_csv_errors_name_file_line_problem(tmp_path, text, match):
    ann = tmp_path / "ann.csv"
    ann.write_text(text)
    with pytest.raises(AnnotationError, match=match):
        load_records("csv", ann)


def test_duplicate_ids_are_reported_with_both_lines(real_data, tmp_path):
    lines = (real_data / "msrvtt" / "MSRVTT_JSFUSION_test.csv").read_text().splitlines()
    (tmp_path / "MSRVTT_JSFUSION_test.csv").write_text("\n".join(lines[:4] + [lines[2]]) + "\n")
    with pytest.raises(AnnotationError, match=r":5: duplicate video id 'video9771' \(first on line 3\)"):
        load_records("msrvtt", tmp_path, split="test-1ka")


def test_generic_jsonl(tmp_path):
    ann = tmp_path / "train.jsonl"
    ann.write_text('{"video": "a.mp4", "caption": ["one", "two"], "split": "train"}\n'
                   '{"video": "b.mp4", "caption": "three", "split": "test"}\n')
    (record,) = load_records("jsonl", tmp_path, split="train")
    assert (record.video_id, record.captions) == ("a.mp4", ["one", "two"])
    ann.write_text('{"video": "a.mp4", "caption": "one"}\n{"video": "b.mp4", caption: 2}\n')
    with pytest.raises(AnnotationError, match=r"train\.jsonl:2: invalid JSON"):
        load_records("jsonl", ann)


def test_json_duplicate_keys_rejected(tmp_path):
    (tmp_path / "val_1.json").write_text('{"v_a": {"timestamps": [[0, 1]], "sentences": ["x"]},'
                                         ' "v_a": {"timestamps": [[0, 1]], "sentences": ["y"]}}')
    with pytest.raises(AnnotationError, match="duplicate key 'v_a'"):
        load_records("activitynet", tmp_path, split="test")


def test_unknown_names_are_clear(real_data):
    with pytest.raises(ValueError, match="unknown dataset 'kinetics'"):
        load_records("kinetics", real_data)
    with pytest.raises(ValueError, match="has no split 'train'.*test-1ka"):
        load_records("msrvtt", real_data / "msrvtt", split="train")
