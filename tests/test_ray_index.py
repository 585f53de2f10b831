"""`vop index --engine ray` (Ray Data on a local 2-CPU Ray, shared by this module's tests): the same
rows and vectors as the plain path on real videos; a SIGKILLed worker is retried with every video
indexed once; a SIGKILLed driver, rerun, gives the same index and encodes only what was unfinished."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import pytest
import torch
from conftest import color_video, write_video

from vop.backbone.clip import build_clip
from vop.index.build import build_index
from vop.index.encoder import VideoEncoder
from vop.index.store import DB_NAME, IndexStore

ray = pytest.importorskip("ray")  # installed by the test extra: never skipped there

FRAMES = 4
OPTIONS = {"threads": 1}  # the plain runs here use 1 torch thread too: vectors compared at equal threads


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray (2 CPUs, no dashboard) for the whole module; its address for other drivers."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def _encoder() -> VideoEncoder:
    return VideoEncoder.from_clip(build_clip("tiny", seed=0), frames=FRAMES, backbone_source="tiny")


def _rows(index: Path) -> dict:
    """Every stored column but the row id (ids follow arrival order, which Ray does not fix)."""
    with IndexStore(index / DB_NAME) as store:
        return {r.path: (r.status, r.error, r.size, r.mtime_ns, r.duration, r.num_frames, r.width, r.height,
                         r.thumbnail, r.file_id, None if r.vector is None else r.vector.tobytes())
                for r in store.rows()}


def _shard_vectors(index: Path) -> dict[str, np.ndarray | None]:
    table = pads.dataset(index / "embeddings", format="parquet").to_table(columns=["path", "vector"])
    paths = table.column("path").to_pylist()
    assert len(paths) == len(set(paths)), "a video is in the shards twice"
    return {p: None if v is None else np.asarray(v, np.float32)
            for p, v in zip(paths, table.column("vector").to_pylist())}


def _collection(root: Path, n: int) -> Path:
    for i in range(n):
        write_video(root / f"d{i % 3}" / f"v{i:02d}.mp4", color_video(num_frames=5 + i, size=32, seed=i))
    return root


def test_ray_gives_the_plain_rows_and_vectors_on_real_videos(local_ray, real_data, tmp_path):
    torch.set_num_threads(1)
    plain = build_index(real_data / "videos", tmp_path / "plain", _encoder(), progress=False)
    report = build_index(real_data / "videos", tmp_path / "ray", _encoder(), progress=False, engine="ray",
                         ray_options=OPTIONS)
    assert (report.encoded, report.indexed, report.errors) == (plain.encoded, plain.indexed, plain.errors)
    assert [e["path"] for e in report.errors] == ["decord/corrupted.mp4"]  # the error row, with its reason
    assert _rows(tmp_path / "ray") == _rows(tmp_path / "plain")
    ours, theirs = _shard_vectors(tmp_path / "ray"), _shard_vectors(tmp_path / "plain")
    assert ours.keys() == theirs.keys()
    diffs = [np.abs(ours[p] - theirs[p]).max() for p in ours if ours[p] is not None]
    assert len(diffs) == 8 and max(diffs) <= 1e-6
    again = build_index(real_data / "videos", tmp_path / "ray", _encoder(), progress=False, engine="ray",
                        ray_options=OPTIONS)
    assert (again.encoded, again.unchanged) == (0, 9)  # incremental on Ray too


class KillsItsWorker(VideoEncoder):
    """The real encoder, whose worker process SIGKILLs itself on its 2nd video, once per test
    (``marker`` records the kill, so the restarted worker goes on)."""

    marker: str = ""

    def encode_decoded(self, decoded):
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls == 2 and not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return super().encode_decoded(decoded)


def test_a_killed_worker_is_retried_and_every_video_indexed_once(local_ray, tmp_path):
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    root = _collection(tmp_path / "videos", 12)
    build_index(root, tmp_path / "plain", _encoder(), progress=False)
    encoder = KillsItsWorker.from_clip(build_clip("tiny", seed=0), frames=FRAMES, backbone_source="tiny")
    encoder.marker = str(tmp_path / "killed")
    report = build_index(root, tmp_path / "ray", encoder, progress=False, engine="ray", ray_options=OPTIONS)
    killed = int((tmp_path / "killed").read_text())
    assert killed != os.getpid()  # a worker process died, not this driver
    with pytest.raises(ProcessLookupError):
        os.kill(killed, 0)
    assert report.encoded == 12 and report.indexed == 12
    assert sorted(_shard_vectors(tmp_path / "ray")) == sorted(_rows(tmp_path / "plain"))  # each once
    assert _rows(tmp_path / "ray") == _rows(tmp_path / "plain")


def test_a_killed_driver_rerun_gives_the_same_index_and_encodes_only_the_rest(local_ray, tmp_path):
    root = _collection(tmp_path / "videos", 8)
    (root / "broken.mp4").write_bytes(b"not a video")
    build_index(root, tmp_path / "plain", _encoder(), progress=False)
    out = tmp_path / "ray"
    script = textwrap.dedent(f"""
        import os, signal
        from vop.backbone.clip import build_clip
        from vop.index.build import build_index
        from vop.index.encoder import VideoEncoder
        enc = VideoEncoder.from_clip(build_clip("tiny", seed=0), frames={FRAMES}, backbone_source="tiny")
        def kill(n):
            if n == 3:
                os.kill(os.getpid(), signal.SIGKILL)
        build_index({str(root)!r}, {str(out)!r}, enc, progress=False, after_each=kill, part_rows=1,
                    engine="ray", ray_options={{"address": {local_ray!r}, "threads": 1}})
    """)
    proc = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    done = _shard_vectors(out)
    assert len(done) == 3 and not (out / DB_NAME).exists()  # three finished parts, no index yet
    report = build_index(root, out, _encoder(), progress=False, engine="ray", ray_options=OPTIONS)
    assert (report.encoded + len(report.failed), report.unchanged) == (9 - 3, 3)  # only the unfinished
    assert _rows(out) == _rows(tmp_path / "plain")
    assert sorted(_shard_vectors(out)) == sorted(_rows(out))


def test_cli_engine_ray(local_ray, tmp_path, capsys):
    from vop.backbone.loading import save_clip
    from vop.cli import main

    backbone = save_clip(build_clip("tiny", seed=0), tmp_path / "tiny.safetensors")
    root = _collection(tmp_path / "videos", 3)
    base = ["index", str(root), "--backbone", str(backbone), "--frames", str(FRAMES), "--out", str(tmp_path / "idx"),
            "--quiet", "--threads", "1", "--engine", "ray"]
    assert main([*base, "--address", local_ray, "--json"]) == 0
    assert '"indexed": 3' in capsys.readouterr().out
    assert main([*base, "--shard", "0/2"]) == 2
    assert "without --shard" in capsys.readouterr().err
