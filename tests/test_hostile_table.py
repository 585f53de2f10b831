"""Every ``vop`` command on a table of hostile inputs (issue 28).

Each row is one test id: a command line built against a small real world (a saved tiny CLIP,
three short generated videos, a frame cache and an index made by the real commands), run
in-process through ``vop.cli.main`` or, where marked, as a real ``python -m vop`` process. A row
fails on any traceback, on an exit status other than the one it names (0 where the hostile
input must become a recorded error row, 2 for every refusal; 1 only for ``vop data check``,
whose documented status for "problems found" it is), and, for a refusal, unless the last line of
stderr is the one ``vop COMMAND: error: REASON`` line (argparse may print its usage above it).

The full disk and the unwritable folder are real: as root, a 64 KiB tmpfs and a read-only
tmpfs are mounted; otherwise the file-size limit of the child process (``RLIMIT_FSIZE``, a real
``EFBIG`` from the kernel) and a folder without write permission stand in for them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from conftest import color_video, write_video

from vop.cli import main

FRAMES = 2
PY = [sys.executable, "-m", "vop"]
# the training row whose every step lacks decodable videos steps the schedule without an update
pytestmark = pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before:UserWarning")


# --- the world every row runs against -----------------------------------------------------


@dataclass
class World:
    root: Path
    backbone: Path
    videos: Path
    ann: Path
    cache: Path
    index: Path
    recipe_text: str


RECIPE = """name: hostile
seed: 0
model: {{backbone: {backbone}, method: vop, frames: 2, overrides: {{text_length: 2, visual_length: 2}}}}
data: {{dataset: {dataset}, annotations: {annotations}, videos: {videos}, train_split: {train},
        val_split: null, test_split: null}}
optim: {{lr: 1.0e-2, epochs: 1, batch_size: 2}}
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    import torch

    from vop.backbone.clip import build_clip
    from vop.backbone.loading import save_clip

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("world")
    backbone = save_clip(build_clip("tiny", seed=0), root / "tiny.safetensors")
    for i in range(3):
        write_video(root / "videos" / f"v{i}.mp4", color_video(num_frames=6, size=32, seed=i))
    ann = root / "ann.csv"
    ann.write_text("video,caption,split\n" + "".join(f"v{i}.mp4,a clip number {i},test\n" for i in range(3)))
    cache, index = root / "cache", root / "index"
    assert main(["prepare", "csv", "--annotations", str(ann), "--videos", str(root / "videos"),
                 "--cache", str(cache), "--frames", str(FRAMES), "--size", "32", "--no-progress"]) == 0
    assert main(["index", str(root / "videos"), "--backbone", str(backbone), "--frames", str(FRAMES),
                 "--out", str(index), "--quiet"]) == 0
    return World(root, backbone, root / "videos", ann, cache, index, RECIPE)


def _copy_tree(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


# --- real full disk and unwritable folder -----------------------------------------------------


def _mount_tmpfs(where: Path, options: str) -> bool:
    """Mount a tmpfs at ``where`` (root only); False where this system does not allow it."""
    if os.geteuid() != 0:
        return False
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, check=False)
    return done.returncode == 0


def _umount(where: Path) -> None:
    subprocess.run(["umount", str(where)], capture_output=True, check=False)


@contextlib.contextmanager
def unwritable_dir(tmp: Path):
    """A folder nobody can write into: a read-only tmpfs as root, else a folder mode 0555."""
    where = tmp / "readonly"
    if _mount_tmpfs(where, "ro,size=64k"):
        try:
            yield where
        finally:
            _umount(where)
        return
    where.mkdir()
    where.chmod(0o555)
    try:
        yield where
    finally:
        where.chmod(0o755)


# --- the table ---------------------------------------------------------------------------------


@dataclass
class Case:
    id: str
    cmd: str  # the COMMAND of "vop COMMAND: error:"
    build: object  # (world, tmp) -> argv
    pattern: str = ""  # regex the error line must match
    code: int = 2
    subprocess: bool = False
    check: object = None  # (world, tmp, out, err) -> None, extra assertions
    tags: list = field(default_factory=list)


def _w(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


def _eval(w: World, dataset: str, annotations: Path, *extra: str) -> list[str]:
    return ["eval", "--method", "zeroshot", "--backbone", str(w.backbone), "--frames", str(FRAMES),
            "--dataset", dataset, "--annotations", str(annotations), "--videos", str(w.videos),
            "--no-progress", *extra]


def _train(w: World, tmp: Path, dataset: str, annotations: Path, train: str = "train") -> list[str]:
    recipe = _w(tmp / "recipe.yaml", w.recipe_text.format(backbone=w.backbone, dataset=dataset,
                                                          annotations=annotations, videos=w.videos, train=train))
    return ["train", str(recipe), "--out", str(tmp / "run"), "--no-progress"]


def _search(w: World, *extra: str) -> list[str]:
    return ["search", str(w.index), "a clip", *extra]


def _index(w: World, tmp: Path, *extra: str, videos: Path | None = None) -> list[str]:
    return ["index", str(videos or w.videos), "--backbone", str(w.backbone), "--frames", str(FRAMES),
            "--out", str(tmp / "idx"), "--quiet", *extra]


def _prepare(w: World, cache: Path, *extra: str) -> list[str]:
    """A later ``--frames``/``--size`` in ``extra`` overrides these (argparse keeps the last)."""
    return ["prepare", "csv", "--annotations", str(w.ann), "--videos", str(w.videos), "--cache", str(cache),
            "--frames", str(FRAMES), "--size", "32", "--no-progress", *extra]


# hostile annotation files: (id, dataset, split, {relative file: content}, what the error says)
JSONL = "jsonl"
ANNOTATIONS = [
    ("jsonl-int-split", JSONL, "train", {"a.jsonl": '{"video": "v0.mp4", "caption": "x", "split": 3}\n'},
     r"a\.jsonl:1: 'split' must be a string, found an integer"),
    ("jsonl-list-video", JSONL, "all", {"a.jsonl": '{"video": "v0.mp4", "caption": "x"}\n'
                                                   '{"video": ["v1.mp4"], "caption": "y"}\n'},
     r"a\.jsonl:2: 'video' must be a string or an integer, found a list"),
    ("jsonl-number-caption", JSONL, "all", {"a.jsonl": '{"video": "v0.mp4", "caption": 5}\n'},
     r"a\.jsonl:1: caption must be a string, found an integer"),
    ("jsonl-caption-list-of-objects", JSONL, "all", {"a.jsonl": '{"video": "v0.mp4", "caption": [{"a": 1}]}\n'},
     r"a\.jsonl:1: caption must be a string, found an object"),
    ("jsonl-empty-caption-list", JSONL, "all", {"a.jsonl": '{"video": "v0.mp4", "caption": []}\n'},
     r"a\.jsonl:1: 'caption' is an empty list"),
    ("jsonl-object-group", JSONL, "all", {"a.jsonl": '{"video": "v0.mp4", "caption": "x", "group": {}}\n'},
     r"a\.jsonl:1: 'group' must be a string or an integer, found an object"),
    ("jsonl-bool-video", JSONL, "all", {"a.jsonl": '{"video": true, "caption": "x"}\n'},
     r"a\.jsonl:1: 'video' must be a string or an integer, found true/false"),
    ("jsonl-nested-100000", JSONL, "all", {"a.jsonl": '{"video": "v0.mp4", "caption": "x"}\n' + "[" * 100_000},
     r"a\.jsonl:2: invalid JSON \(nested too deeply\)"),
    ("jsonl-not-utf8", JSONL, "all", {"a.jsonl": b'{"video": "v0.mp4", "caption": "x"}\n{"video": "\xff"}\n'},
     r"a\.jsonl:2: not UTF-8 text"),
    ("csv-unterminated-quote", "csv", "all", {"a.csv": 'video,caption\nv0.mp4,"a dog\nv1.mp4,a cat\n'},
     r"a\.csv:2: a quoted field opened here runs on"),
    ("csv-field-over-128k", "csv", "all", {"a.csv": 'video,caption\nv0.mp4,"' + "x" * 140_000 + '"\n'},
     r"a\.csv:2: unreadable CSV row"),
    ("msrvtt-list-video-id", "msrvtt", "train-9k",
     {"MSRVTT_train.9k.csv": "video_id\nv0\n",
      "MSRVTT_data.json": '{"sentences": [{"video_id": ["v0"], "caption": "x"}]}'},
     r"MSRVTT_data\.json: video_id in sentences\[0\] must be a string or an integer, found a list"),
    ("msvd-number-captions", "msvd", "test", {"test_list.txt": "v0\n", "captions_msvd.json": '{"v0": [1, 2]}'},
     r"captions_msvd\.json: caption 0 of video 'v0' must be a string, found an integer"),
    ("didemo-object-video", "didemo", "test",
     {"test_data.json": '[{"video": {"x": 1}, "description": "a dog", "times": [[0, 1]]}]'},
     r"test_data\.json: video in annotation 0 must be a string or an integer, found an object"),
    ("didemo-times-objects", "didemo", "test",
     {"test_data.json": '[{"video": "v0", "description": "a dog", "times": [{}]}]'},
     r"test_data\.json: annotation 0 \(video 'v0'\): bad 'times'"),
    ("didemo-nested-100000", "didemo", "test", {"test_data.json": "[" * 100_000 + "]" * 100_000},
     r"test_data\.json: invalid JSON \(nested too deeply\)"),
    ("activitynet-entry-is-a-list", "activitynet", "test", {"val_1.json": '{"v_a": [1, 2]}'},
     r"val_1\.json: video 'v_a': expected an object, found a list"),
    ("activitynet-text-timestamp", "activitynet", "test",
     {"val_1.json": '{"v_a": {"timestamps": ["ab"], "sentences": ["a dog"]}}'},
     r"val_1\.json: video 'v_a': timestamp 0 is a string, not \[start, end\]"),
    ("activitynet-infinite-timestamp", "activitynet", "test",
     {"val_1.json": '{"v_a": {"timestamps": [[1e999, 2]], "sentences": ["a dog"]}}'},
     r"val_1\.json: video 'v_a': timestamp 0 starts at inf"),
]


def _annotations(tmp: Path, dataset: str, files: dict) -> Path:
    """The annotation file (csv, jsonl) or folder (the benchmarks) holding ``files``."""
    for name, content in files.items():
        _w(tmp / "ann" / name, content)
    return tmp / "ann" / next(iter(files)) if dataset in ("csv", "jsonl") else tmp / "ann"


def _annotation_cases() -> list[Case]:
    cases = []
    for cid, dataset, split, files, pattern in ANNOTATIONS:
        cases.append(Case(f"eval-{cid}", "eval", lambda w, t, d=dataset, f=files, s=split:
                          _eval(w, d, _annotations(t, d, f), "--split", s), pattern))
    for cid in ("jsonl-int-split", "jsonl-list-video", "msrvtt-list-video-id", "activitynet-entry-is-a-list"):
        _, dataset, split, files, pattern = next(a for a in ANNOTATIONS if a[0] == cid)
        cases.append(Case(f"train-{cid}", "train", lambda w, t, d=dataset, f=files, s=split:
                          _train(w, t, d, _annotations(t, d, f), s), pattern))
        # data check reports problems on stdout and exits 1 (its documented status), never a traceback
        cases.append(Case(f"data-check-{cid}", "data check", lambda w, t, d=dataset, f=files, s=split:
                          ["data", "check", d, "--annotations", str(_annotations(t, d, f)), "--split", s],
                          code=1, check=lambda w, t, out, err, p=pattern: _assert(re.search(p, out), out)))
    return cases


def _assert(condition, message) -> None:
    assert condition, message


def _undecodable(tmp: Path) -> tuple[Path, Path]:
    videos = tmp / "bad"
    for i in range(2):
        _w(videos / f"v{i}.mp4", os.urandom(2000))
    ann = _w(tmp / "bad.csv", "video,caption\nv0.mp4,a dog\nv1.mp4,a cat\n")
    return videos, ann


def _eval_undecodable(w, tmp, *extra):
    videos, ann = _undecodable(tmp)
    argv = _eval(w, "csv", ann, *extra)
    argv[argv.index("--videos") + 1] = str(videos)
    return argv


def _hostile_contents(content: str):
    def build(w, tmp, command="index"):
        cache = _copy_tree(w.cache, tmp / "cache")
        _w(cache / "videos.json", content)
        if command == "prepare":
            return _prepare(w, cache)
        return _index(w, tmp, "--cache", str(cache))
    return build


CONTENTS = [
    ("not-json", "this is not JSON", r"videos\.json: not valid JSON \(JSONDecodeError"),
    ("a-list", "[1, 2]", r"videos\.json: expected a JSON object, found list"),
    ("videos-a-string", '{"videos": "x"}', r"videos\.json: 'videos' and 'failed' must be JSON objects"),
    ("entry-a-number", '{"videos": {"v0.mp4": 7}}', r"videos\.json: videos\['v0\.mp4'\] must be a JSON object"),
    ("frames-10e12", '{"videos": {"v0.mp4": {"frames": 1000000000000}}}',
     r"videos\['v0\.mp4'\]\.frames is '1000000000000'; expected an integer from 1 to 1024"),
    ("size-a-string", '{"videos": {"v0.mp4": {"source": {"path": "/x", "size": "big", "mtime_ns": 1}}}}',
     r"source\.size is 'big'"),
    ("path-a-list", '{"videos": {"v0.mp4": {"source": {"path": [1], "size": 1, "mtime_ns": 1}}}}',
     r"source\.path must be a string"),
    ("failed-reason-object", '{"failed": {"v0.mp4": {"a": 1}}}', r"failed\['v0\.mp4'\] must be a string"),
    ("nested-50000", '{"videos": ' + "[" * 50_000 + "]" * 50_000 + "}", r"videos\.json: not valid JSON \(RecursionError"),
    ("5000-digit-number", '{"videos": {"v0.mp4": {"frames": 1' + "0" * 5000 + "}}}",
     r"videos\.json: not valid JSON \(Exceeds the limit"),
]


def _cache_settings(content: str):
    def build(w, tmp):
        cache = _copy_tree(w.cache, tmp / "cache")
        _w(cache / "cache.json", content)
        return _index(w, tmp, "--cache", str(cache))
    return build


def _bad_npy(w, tmp):
    """Two cached frame files replaced: one pickled object array, one float [2, 3]."""
    from vop.data.cache import FrameCache

    cache = _copy_tree(w.cache, tmp / "cache")
    fc = FrameCache(cache)
    np.save(fc.path_for("v0.mp4"), np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(fc.path_for("v1.mp4"), np.zeros((2, 3)))
    return _index(w, tmp, "--cache", str(cache), "--json")


def _check_bad_npy(w, tmp, out, err):
    report = json.loads(out)
    errors = {e["path"]: e["error"] for e in report["errors"]}
    assert set(errors) == {"v0.mp4", "v1.mp4"}, errors  # one error row each; the run went on
    assert "pickled Python objects" in errors["v0.mp4"] and "unsafe" not in errors["v0.mp4"]
    assert "float64 [2, 3], not uint8 [K, H, W, 3]" in errors["v1.mp4"]
    assert report["discovered"] == 3 and report["indexed"] == 1 and report["from_cache"] == 1  # v2.mp4


def _fifo_videos(w, tmp):
    videos = _copy_tree(w.videos, tmp / "videos")
    os.mkfifo(videos / "pipe.mp4")
    return _index(w, tmp, "--json", videos=videos)


def _check_fifo(w, tmp, out, err):
    errors = {e["path"]: e["error"] for e in json.loads(out)["errors"]}
    assert errors == {"pipe.mp4": "is a FIFO (named pipe), not a video file"}, errors


def _fifo_annotations(tmp):
    (tmp / "ann").mkdir()
    os.mkfifo(tmp / "ann" / "test_list.txt")  # reading it would wait forever: it must not be opened
    return tmp / "ann"


def _fifo_like(w, tmp):
    os.mkfifo(tmp / "pipe.mp4")
    return ["search", str(w.index), "--like", str(tmp / "pipe.mp4")]


def _manifest(field_name: str, value):
    def build(w, tmp):
        index = _copy_tree(w.index, tmp / "index")
        data = json.loads((index / "manifest.json").read_text())
        data[field_name] = value
        _w(index / "manifest.json", json.dumps(data))
        return ["search", str(index), "a clip"]
    return build


def _corrupt_sqlite(command: str):
    def build(w, tmp):
        index = _copy_tree(w.index, tmp / "index")
        for suffix in ("-wal", "-shm"):
            (index / f"index.sqlite{suffix}").unlink(missing_ok=True)
        _w(index / "index.sqlite", b"this is not SQLite" * 500)
        if command == "search":
            return ["search", str(index), "a clip"]
        argv = _index(w, tmp)
        argv[argv.index("--out") + 1] = str(index)
        return argv
    return build


def _prepare_unwritable(w, tmp):
    stack = contextlib.ExitStack()
    where = stack.enter_context(unwritable_dir(tmp))
    _CLEANUP.append(stack)
    return _prepare(w, where / "cache")


_CLEANUP: list[contextlib.ExitStack] = []


def _check_no_tmp(w, tmp, out, err):
    leftovers = [p for p in tmp.rglob("*.tmp-*")]
    assert not leftovers, leftovers


CASES: list[Case] = [
    *_annotation_cases(),
    # --- numbers on the command line: refused at parse time, before anything is allocated
    *[Case(f"{cmd}-frames-{v}", cmd, (lambda w, t, b=build, v=v: [*b(w, t), "--frames", v]),
           rf"argument --frames: ({re.escape(v)} is out of range; expected an integer from 1 to 1024|{v!r} is not an integer)")
      for v in ("0", "-1", "100000", "x")
      for cmd, build in (("index", lambda w, t: _index(w, t)),
                         ("eval", lambda w, t: _eval(w, "csv", w.ann)),
                         ("prepare", lambda w, t: _prepare(w, t / "c")),
                         ("methods", lambda w, t: ["methods", "--backbone", "tiny"]))],
    Case("prepare-size-0", "prepare", lambda w, t: _prepare(w, t / "c", "--size", "0"),
         r"argument --size: 0 is out of range; expected an integer from 16 to 4096"),
    Case("prepare-size-huge", "prepare", lambda w, t: _prepare(w, t / "c", "--size", "99999"), r"--size: 99999"),
    Case("prepare-workers-0", "prepare", lambda w, t: _prepare(w, t / "c", "--workers", "0"), r"--workers: 0"),
    Case("eval-batch-size-0", "eval", lambda w, t: [*_eval(w, "csv", w.ann), "--batch-size", "0"], r"--batch-size: 0"),
    Case("eval-chunk-negative", "eval", lambda w, t: [*_eval(w, "csv", w.ann), "--chunk", "-5"], r"--chunk: -5"),
    Case("index-threads-0", "index", lambda w, t: _index(w, t, "--threads", "0"), r"--threads: 0"),
    Case("index-workers-0", "index", lambda w, t: _index(w, t, "--workers", "0"), r"--workers: 0"),
    Case("index-decode-workers-0", "index", lambda w, t: _index(w, t, "--decode-workers", "0"), r"--decode-workers: 0"),
    Case("index-gpus-per-worker-nan", "index", lambda w, t: _index(w, t, "--gpus-per-worker", "nan"),
         r"--gpus-per-worker: nan is out of range"),
    Case("index-memory-budget-inf", "index", lambda w, t: _index(w, t, "--memory-budget", "inf"),
         r"--memory-budget must be a positive size of at most 2\^60 bytes, got 'inf'"),
    Case("index-rerun-keeps-the-index-frames", "index", lambda w, t: _rerun_without_frames(w, t), code=0,
         check=lambda w, t, out, err: _assert("0 encoded now, 3 unchanged" in out, out)),
    Case("index-shard-5-of-2", "index", lambda w, t: _index(w, t, "--shard", "5/2"), r"--shard 5/2: need 0 <= i < n"),
    Case("index-shard-text", "index", lambda w, t: _index(w, t, "--shard", "a/b"), r"--shard must look like i/n"),
    Case("index-shard-million", "index", lambda w, t: _index(w, t, "--shard", "0/1000000"),
         r"--shard 0/1000000: at most 100,000 shards"),
    Case("search-k-0", "search", lambda w, t: _search(w, "-k", "0"), r"argument -k: 0 is out of range"),
    Case("search-k-huge", "search", lambda w, t: _search(w, "-k", "10000000000"), r"argument -k: 10000000000"),
    Case("search-nprobe-0", "search", lambda w, t: _search(w, "--nprobe", "0"), r"--nprobe: 0"),
    Case("search-k-factor-negative", "search", lambda w, t: _search(w, "--k-factor", "-3"), r"--k-factor: -3"),
    Case("demo-seed-negative", "demo", lambda w, t: ["demo", "--seeds", "-1"], r"--seeds: -1"),
    Case("demo-jobs-0", "demo", lambda w, t: ["demo", "--jobs", "0"], r"--jobs: 0"),
    Case("demo-threads-0", "demo", lambda w, t: ["demo", "--threads", "0"], r"--threads: 0"),
    Case("serve-port-70000", "serve", lambda w, t: ["serve", str(w.index), "--port", "70000"], r"--port: 70000",
         subprocess=True),
    Case("serve-threads-0", "serve", lambda w, t: ["serve", str(w.index), "--threads", "0"], r"--threads: 0",
         subprocess=True),
    Case("index-frames-100000-process", "index", lambda w, t: [*_index(w, t), "--frames", "100000"],
         r"--frames: 100000 is out of range", subprocess=True),
    # --- eval with nothing to evaluate
    Case("eval-no-video-decodes", "eval", lambda w, t: _eval_undecodable(w, t),
         r"none of the 2 videos could be decoded; nothing to evaluate"),
    Case("eval-no-video-decodes-process", "eval", lambda w, t: _eval_undecodable(w, t),
         r"none of the 2 videos could be decoded", subprocess=True),
    Case("eval-on-error-raise", "eval", lambda w, t: _eval_undecodable(w, t, "--on-error", "raise"),
         r"cannot decode .*v0\.mp4"),
    Case("eval-no-video-found", "eval", lambda w, t: _eval(w, "csv", _w(t / "a.csv", "video,caption\nzz.mp4,x\n")),
         r"no video of .*a\.csv was found under --videos"),
    Case("eval-json-into-a-file", "eval",
         lambda w, t: [*_eval(w, "csv", w.ann), "--json", str(_w(t / "f", "x") / "out.json")],
         r"cannot write --json .*f/out\.json"),
    # --- prepare: where the cache cannot be written
    Case("prepare-into-a-file", "prepare", lambda w, t: _prepare(w, _w(t / "file", "x")),
         r"cannot write the frame cache at .*file \(Not a directory"),
    Case("prepare-under-a-file", "prepare", lambda w, t: _prepare(w, _w(t / "file", "x") / "sub"),
         r"cannot write the frame cache at .*file/sub"),
    Case("prepare-unwritable", "prepare", _prepare_unwritable,
         r"cannot write the frame cache at .*readonly/cache \((Read-only file system|Permission denied)",
         check=_check_no_tmp),
    Case("prepare-on-error-raise", "prepare",
         lambda w, t: ["prepare", "csv", "--annotations", str(_undecodable(t)[1]), "--videos", str(t / "bad"),
                       "--cache", str(t / "c"), "--frames", "2", "--size", "32", "--no-progress",
                       "--on-error", "raise"], r"cannot decode .*v0\.mp4"),
    # --- hostile frame-cache files, read by vop index --cache and by vop prepare
    *[Case(f"index-cache-videos-json-{cid}", "index", _hostile_contents(content), pattern)
      for cid, content, pattern in CONTENTS],
    *[Case(f"prepare-videos-json-{cid}", "prepare", lambda w, t, c=content: _hostile_contents(c)(w, t, "prepare"),
           pattern) for cid, content, pattern in CONTENTS[::3]],
    Case("index-cache-json-not-json", "index", _cache_settings("{"), r"cache\.json: not valid JSON"),
    Case("index-cache-json-frames-text", "index", _cache_settings('{"version": 1, "frames": "x", "short_side": 32}'),
         r"cache\.json: frames is 'x'; expected an integer from 1 to 1024"),
    Case("index-cache-json-version-2", "index", _cache_settings('{"version": 2, "frames": 2, "short_side": 32}'),
         r"cache\.json: cache version 2 is not 1"),
    Case("eval-cache-videos-json-not-json", "eval",
         lambda w, t: [*_eval(w, "csv", w.ann), "--cache", str(_hostile_contents("nope")(w, t)[-1])],
         r"videos\.json: not valid JSON"),
    # --- a bad cached .npy or a FIFO is one error row; the run goes on (exit 0)
    Case("index-cache-bad-npy", "index", _bad_npy, code=0, check=_check_bad_npy),
    Case("eval-cache-bad-npy", "eval", lambda w, t: [*_eval(w, "csv", w.ann), "--cache", _bad_npy(w, t)[-2]],
         code=0, check=lambda w, t, out, err: _assert("1 videos, 1 text queries" in out and
                                                      "2 undecodable videos SKIPPED" in out, out)),
    Case("index-fifo-in-folder", "index", _fifo_videos, code=0, check=_check_fifo),
    Case("search-like-fifo", "search", _fifo_like, r"pipe\.mp4: is a FIFO \(named pipe\), not a video file"),
    Case("eval-annotation-fifo", "eval", lambda w, t: _eval(w, "msvd", _fifo_annotations(t), "--split", "test"),
         r"test_list\.txt: is a FIFO \(named pipe\), not an annotation file"),
    Case("search-like-missing", "search", lambda w, t: ["search", str(w.index), "--like", str(t / "nope.mp4")],
         r"nope\.mp4: file not found"),
    # --- hostile indexes (reused from test_hostile_index.py)
    Case("search-manifest-frames-1e9", "search", _manifest("frames", 1_000_000_000),
         r"manifest\.json.*frames is '1000000000'; expected an integer from 1 to 1024"),
    Case("search-manifest-dim-negative", "search", _manifest("dim", -3), r"manifest\.json.*dim is '-3'"),
    Case("search-corrupt-sqlite", "search", _corrupt_sqlite("search"), r"index\.sqlite"),
    Case("index-corrupt-sqlite", "index", _corrupt_sqlite("index"), r"not a readable index database"),
    Case("search-missing-index", "search", lambda w, t: ["search", str(t / "nope"), "x"], r"manifest\.json not found"),
    Case("index-video-dir-is-a-file", "index", lambda w, t: _index(w, t, videos=_w(t / "f.mp4", "x")),
         r"is not a folder"),
    Case("serve-missing-index", "serve", lambda w, t: ["serve", str(t / "nope")], r"manifest\.json not found",
         subprocess=True),
    # --- train, methods, adapter, data check, env
    Case("train-missing-recipe", "train", lambda w, t: ["train", str(t / "nope.yaml")], r"config file not found"),
    Case("train-malformed-yaml", "train", lambda w, t: ["train", str(_w(t / "b.yaml", "model: {backbone: [x\n"))],
         r"b\.yaml: not valid YAML at line \d+, column \d+"),
    Case("train-yaml-nested-50000", "train", lambda w, t: ["train", str(_w(t / "d.yaml", "a: " + "[" * 50_000))],
         r"d\.yaml: not valid YAML"),
    Case("train-frames-0", "train", lambda w, t: [*_train(w, t, "csv", w.ann, "test"), "--set", "model.frames=0"],
         r"frames"),
    Case("train-frames-100000", "train",
         lambda w, t: [*_train(w, t, "csv", w.ann, "test"), "--set", "model.frames=100000"], r"frames.*100000"),
    Case("train-out-under-a-file", "train",
         lambda w, t: _with_out(_train(w, t, "csv", w.ann, "test"), _w(t / "f", "x") / "run"), r"Not a directory"),
    Case("train-recipe-is-a-folder", "train", lambda w, t: ["train", str(t)], r"."),
    Case("train-unknown-override", "train",
         lambda w, t: [*_train(w, t, "csv", w.ann, "test"), "--set", "model.overrides.nonsense_key=3"],
         r"nonsense_key"),
    # --- hostile weights files (reused from test_hostile_checkpoints.py): refused, no code runs
    Case("index-backbone-garbage", "index", lambda w, t: _with_backbone(_index(w, t), _w(t / "j.safetensors",
                                                                                         os.urandom(3000))),
         r"j\.safetensors: not a readable safetensors file"),
    Case("eval-backbone-pickled-os-system", "eval", lambda w, t: _with_backbone(_eval(w, "csv", w.ann), _evil(t)),
         r"evil\.pt: holds a Python object \((posix|os)\.system\)",
         check=lambda w, t, out, err: _assert(not (t / "pwned").exists(), "the pickle ran code")),
    Case("search-backbone-garbage", "search",
         lambda w, t: [*_search(w), "--backbone", str(_w(t / "j.pt", os.urandom(3000)))], r"j\.pt"),
    Case("train-no-video-decodes", "train", lambda w, t: _train_undecodable(w, t),
         r"none of the 1 training steps had 2 decodable videos: nothing was trained",
         check=lambda w, t, out, err: _assert(not (t / "run" / "adapter").exists(), "an adapter was written")),
    Case("methods-unknown-backbone", "methods", lambda w, t: ["methods", "--backbone", "ViT-X"], r"ViT-X"),
    Case("adapter-inspect-missing", "adapter inspect", lambda w, t: ["adapter", "inspect", str(t)],
         r"adapter\.json: not found"),
    Case("adapter-inspect-not-json", "adapter inspect",
         lambda w, t: ["adapter", "inspect", str(_w(t / "a" / "adapter.json", "{").parent)], r"adapter\.json"),
    Case("adapter-import-missing", "adapter import",
         lambda w, t: ["adapter", "import", "modelscope", str(t / "nope"), "--out", str(t / "a")], r"nope: not found"),
    Case("export-missing-index", "export", lambda w, t: ["export", str(t / "nope"), str(t / "out")],
         r"manifest\.json not found"),
    Case("export-manifest-not-json", "export",
         lambda w, t: ["export", _manifest("frames", 0)(w, t)[1], str(t / "out")], r"manifest\.json"),
    Case("export-into-a-file", "export", lambda w, t: ["export", str(w.index), str(_w(t / "f", "x") / "out")],
         r"Not a directory"),
    Case("data-check-videos-is-a-file", "data check",
         lambda w, t: ["data", "check", "csv", "--annotations", str(w.ann), "--videos", str(w.ann)],
         r"videos folder .* does not exist"),
    Case("data-check-unknown-dataset", "data check",
         lambda w, t: ["data", "check", "kinetics", "--annotations", str(t)], r"unknown dataset 'kinetics'"),
    Case("env-runs", "env", lambda w, t: ["env", "--json"], code=0),
]


def _train_undecodable(w: World, tmp: Path) -> list[str]:
    videos, ann = _undecodable(tmp)
    argv = _train(w, tmp, "csv", ann, "all")
    recipe = Path(argv[1])
    recipe.write_text(recipe.read_text().replace(str(w.videos), str(videos)))
    return argv


def _rerun_without_frames(w: World, tmp: Path) -> list[str]:
    """A zero-shot index built with --frames 2, then run again with no --frames: it keeps 2 (the
    default 12 would be refused as another embedding space)."""
    _copy_tree(w.index, tmp / "idx")
    argv = _index(w, tmp)
    i = argv.index("--frames")
    return argv[:i] + argv[i + 2:]


def _with_out(argv: list[str], out: Path) -> list[str]:
    argv[argv.index("--out") + 1] = str(out)
    return argv


def _with_backbone(argv: list[str], backbone: Path) -> list[str]:
    argv[argv.index("--backbone") + 1] = str(backbone)
    return argv


class _Touch:
    """Unpickling this runs ``touch PATH`` (what a malicious checkpoint would do)."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def _evil(tmp: Path) -> Path:
    import torch

    torch.save({"visual.proj": _Touch(tmp / "pwned")}, tmp / "evil.pt")
    return tmp / "evil.pt"


def _run(argv: list[str], in_process: bool, cwd: Path, capsys) -> tuple[int, str, str]:
    if not in_process:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        done = subprocess.run([*PY, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
                              check=False)
        return done.returncode, done.stdout, done.stderr
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def _check_error_line(cmd: str, err: str, pattern: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines, "nothing on stderr"
    errors = [line for line in lines if line.startswith(f"vop {cmd}: error: ")]
    assert errors == [lines[-1]], f"the last stderr line must be the one error line:\n{err}"
    assert re.search(pattern, lines[-1]), f"{pattern!r} not in {lines[-1]!r}"
    return lines[-1]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input(case: Case, world: World, tmp_path, capsys):
    argv = case.build(world, tmp_path)
    try:
        code, out, err = _run(argv, not case.subprocess, tmp_path, capsys)
    finally:
        while _CLEANUP:
            _CLEANUP.pop().close()
    assert "Traceback" not in out + err, err
    assert code == case.code, f"exit {code}, expected {case.code}\nstdout: {out[-2000:]}\nstderr: {err[-2000:]}"
    if case.code == 2:
        _check_error_line(case.cmd, err, case.pattern)
    if case.check is not None:
        case.check(world, tmp_path, out, err)


def test_the_table_covers_every_command():
    from vop.cli import COMMANDS

    covered = {c.cmd.split()[0] for c in CASES}
    assert covered == set(COMMANDS), set(COMMANDS) - covered


# --- a real full disk: vop prepare stops in one line, leaves no temporary file, and resumes


def _fill_limit(limit: int):
    def preexec():
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


def test_prepare_on_a_full_disk_keeps_what_was_cached_and_resumes(world, tmp_path):
    big = tmp_path / "big"
    for i in range(4):
        write_video(big / f"b{i}.mp4", color_video(num_frames=8, size=64, seed=i))
    ann = _w(tmp_path / "big.csv", "video,caption\n" + "".join(f"b{i}.mp4,clip {i}\n" for i in range(4)))
    one_video = 8 * 64 * 64 * 3  # bytes of one video's cached frames (uint8 [8, 64, 64, 3]), plus a header
    disk = tmp_path / "disk"
    argv = ["prepare", "csv", "--annotations", str(ann), "--videos", str(big), "--frames", "8", "--size", "64",
            "--no-progress"]
    mounted = _mount_tmpfs(disk, f"size={8 * 4096 + 2 * one_video}")  # room for about two videos
    try:
        if mounted:
            done = subprocess.run([*PY, *argv, "--cache", str(disk / "cache")], capture_output=True, text=True,
                                  timeout=120, check=False)
            reason = "disk full"
        else:  # not root: the kernel refuses writes past a file-size limit (EFBIG) instead
            disk.mkdir()
            done = subprocess.run([*PY, *argv, "--cache", str(disk / "cache")], capture_output=True, text=True,
                                  timeout=120, preexec_fn=_fill_limit(one_video // 2), check=False)
            reason = "File too large"
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        line = done.stderr.strip().splitlines()[-1]
        assert line.startswith("vop prepare: error: cannot write the frame cache at ") and reason in line, line
        assert "videos cached before are kept" in line
        assert not list(disk.rglob("*.tmp-*")), list(disk.rglob("*"))  # no half-written file is left
        assert len(list((disk / "cache" / "videos").glob("*.npy"))) < 4
        if mounted:  # space freed (no file-size limit in this process): the re-run completes the cache
            assert subprocess.run(["mount", "-o", f"remount,size={8 << 20}", str(disk)], check=False).returncode == 0
        assert main([*argv, "--cache", str(disk / "cache")]) == 0
        videos_json = json.loads((disk / "cache" / "videos.json").read_text())
        assert len(videos_json["videos"]) == 4 and not list(disk.rglob("*.tmp-*"))
    finally:
        if mounted:
            _umount(disk)
