"""vop serve: the JSON API over two indexes (zero-shot and an adapter) sharing one backbone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from conftest import color_video, write_video

from vop.backbone.clip import build_clip
from vop.backbone.loading import save_clip
from vop.index.build import build_index
from vop.index.encoder import VideoEncoder
from vop.index.manifest import IndexMismatchError

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from vop.serve.app import MAX_BODY_BYTES, MAX_K, MAX_QUERY_CHARS, create_app
from vop.serve.service import load_service

FRAMES = 4


def make_collection(tmp):
    """Backbone file, adapter folder, 5 videos (one a symlink out of the root), two indexes."""
    from vop.adapter import save_adapter
    from vop.model import build_model

    torch.set_num_threads(1)
    clip = build_clip("tiny", seed=0)
    backbone = save_clip(clip, tmp / "tiny.safetensors")
    adapter = tmp / "adapter"
    save_adapter(build_model(clip, "vop", frames=FRAMES, seed=1), adapter)
    videos = tmp / "videos"
    for i in range(4):
        write_video(videos / f"v{i}.mp4", color_video(num_frames=8, size=32, seed=i))
    write_video(videos / "escape.mp4", color_video(num_frames=8, size=32, seed=9))
    zs = VideoEncoder.from_clip(clip, frames=FRAMES, backbone_source=str(backbone))
    build_index(videos, tmp / "idx-zeroshot", zs, progress=False)
    ad = VideoEncoder.from_clip(clip, adapter=adapter, backbone_source=str(backbone))
    build_index(videos, tmp / "idx-vop", ad, progress=False)
    # after indexing, escape.mp4 is swapped for a link out of the collection: the server must notice
    (videos / "escape.mp4").rename(tmp / "outside.mp4")
    (videos / "escape.mp4").symlink_to(tmp / "outside.mp4")
    return {
        "backbone": backbone,
        "adapter": adapter,
        "videos": videos,
        "zs": zs,
        "ad": ad,
        "indexes": [str(tmp / "idx-zeroshot"), str(tmp / "idx-vop")],
    }


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    env = make_collection(tmp)
    service = load_service(env["indexes"], [f"mine={env['adapter']}"])
    env["service"] = service
    env["client"] = TestClient(create_app(service), base_url="http://127.0.0.1:8000")
    yield env
    service.close()


def test_health_and_adapters(env):
    client = env["client"]
    assert client.get("/health").json()["status"] == "ok"
    data = client.get("/adapters").json()
    assert data["default"] == "zeroshot"
    by_name = {a["name"]: a for a in data["adapters"]}
    assert set(by_name) == {"zeroshot", "mine"}
    assert by_name["mine"]["method"] == "vop" and by_name["mine"]["videos"] == 5
    assert by_name["zeroshot"]["adapter_sha256"] is None


def test_one_backbone_in_memory_for_all_adapters(env):
    clips = {id(c.searcher.encoder.clip) for c in env["service"].collections.values()}
    models = [c.searcher.encoder.model for c in env["service"].collections.values()]
    assert len(clips) == 1 and all(m.clip is models[0].clip for m in models)


@pytest.mark.parametrize("adapter,enc", [("zeroshot", "zs"), ("mine", "ad")])
def test_search_each_adapter_matches_its_own_encoder(env, adapter, enc):
    res = env["client"].post("/search", json={"query": "a red square", "k": 3, "adapter": adapter})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["adapter"] == adapter and [r["rank"] for r in body["results"]] == [1, 2, 3]
    q = env[enc].encode_texts(["a red square"])[0]
    searcher = env["service"].get(adapter).searcher
    ids, vecs = searcher.store.vectors()
    expected = ids[np.argsort(-(vecs.astype(np.float32) @ q))][:3]
    assert [r["id"] for r in body["results"]] == expected.tolist()


def test_like_thumbnail_and_video_by_id(env):
    client = env["client"]
    first = client.post("/search", json={"query": "anything", "k": 1}).json()["results"][0]
    like = client.post("/search", json={"like": first["id"], "k": 10}).json()["results"]
    assert len(like) == 4 and first["id"] not in [r["id"] for r in like]
    thumb = client.get(first["thumbnail"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert thumb.content[:2] == b"\xff\xd8"
    vid_id = env["service"].get("zeroshot").searcher.store.id_of("v1.mp4")
    video = client.get(f"/videos/zeroshot/{vid_id}/file")
    assert video.status_code == 200 and video.content == (env["videos"] / "v1.mp4").read_bytes()
    part = client.get(f"/videos/zeroshot/{vid_id}/file", headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and len(part.content) == 100


def test_no_path_traversal(env):
    client = env["client"]
    escape_id = env["service"].get("zeroshot").searcher.store.id_of("escape.mp4")
    assert escape_id is not None
    assert (
        client.get(f"/videos/zeroshot/{escape_id}/file").status_code == 404
    )  # swapped for a link out of the root
    for url in (
        "/videos/zeroshot/..%2F..%2F..%2Fetc%2Fpasswd/file",
        "/videos/zeroshot/999999/file",
        "/videos/zeroshot/-1/thumbnail.jpg",
        "/static/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "/static/%2e%2e/app.py",
        "/videos/..%2Fzeroshot/1/file",
    ):
        res = client.get(url)
        assert res.status_code in (404, 422), url
        assert b"root:" not in res.content and b"create_app" not in res.content
    assert client.get("/videos/nope/1/file").json()["detail"].startswith("unknown adapter")


def test_bounded_inputs_and_clear_4xx(env):
    client = env["client"]
    cases = [
        ({"query": "x" * (MAX_QUERY_CHARS + 1)}, 422),
        ({"query": ""}, 422),
        ({"query": "x", "k": MAX_K + 1}, 422),
        ({"query": "x", "k": 0}, 422),
        ({"query": "x", "adapter": "nope"}, 404),
        ({"query": "x", "like": 1}, 400),
        ({}, 400),
        ({"query": "x", "path": "/etc/passwd"}, 422),
        ({"like": 10**6}, 404),
    ]
    for body, status in cases:
        res = client.post("/search", json=body)
        assert res.status_code == status, (body, res.text)
        assert "detail" in res.json()
    big = client.post(
        "/search",
        content=b'{"query": "' + b"x" * MAX_BODY_BYTES + b'"}',
        headers={"content-type": "application/json"},
    )
    assert big.status_code == 413 and "bytes" in big.json()["detail"]
    assert (
        client.post("/search", content=b"{not json", headers={"content-type": "application/json"}).status_code
        == 422
    )


def test_page_is_served(env):
    page = env["client"].get("/")
    assert page.status_code == 200 and 'id="query"' in page.text
    assert env["client"].get("/static/app.js").status_code == 200


def test_adapter_that_matches_no_index_is_refused(env, tmp_path):
    from vop.adapter import save_adapter
    from vop.model import build_model

    other = tmp_path / "other"
    save_adapter(build_model(build_clip("tiny", seed=0), "vop", frames=FRAMES, seed=7), other)
    with pytest.raises(ValueError, match="no given index was built with it"):
        load_service(env["indexes"], [f"other={other}"])


def test_index_whose_adapter_is_gone_is_refused(tmp_path):
    env = make_collection(tmp_path)
    shutil.rmtree(env["adapter"])
    with pytest.raises(IndexMismatchError, match="none of --adapters matches"):
        load_service([env["indexes"][1]])


def test_serve_imports_nothing_from_train(env):
    script = textwrap.dedent(f"""
        import sys
        from vop.serve.app import create_app
        from vop.serve.service import load_service
        create_app(load_service({env["indexes"]!r}, ["mine={env["adapter"]}"]))
        bad = sorted(m for m in sys.modules if m.startswith("vop.train"))
        assert not bad, bad
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script],
        check=False,  # the return code is asserted below, with the output
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr
