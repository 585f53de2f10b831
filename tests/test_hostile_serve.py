"""Hostile HTTP clients (issue 12): bounded bodies whatever the framing, Host check, no echo,
no 500 for odd JSON, and the file endpoint serves only the files that were indexed as videos."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import time

import pytest
import torch
from conftest import color_video, running_server, write_video

from vop.backbone.clip import build_clip
from vop.backbone.loading import save_clip
from vop.index.build import build_index
from vop.index.encoder import VideoEncoder

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from vop.serve.app import MAX_BODY_BYTES, Guard, create_app, host_allowed
from vop.serve.service import load_service

BASE = "http://127.0.0.1:8000"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile_serve")
    torch.set_num_threads(1)
    clip = build_clip("tiny", seed=0)
    backbone = save_clip(clip, tmp / "tiny.safetensors")
    videos = tmp / "videos"
    for i in range(3):
        write_video(videos / f"v{i}.mp4", color_video(num_frames=6, size=32, seed=i))
    (videos / "notes.mp4").write_text("not a video, but a file someone wants to read\n")  # an error row
    write_video(tmp / "outside.mp4", color_video(num_frames=6, size=32, seed=7))
    encoder = VideoEncoder.from_clip(clip, frames=2, backbone_source=str(backbone))
    build_index(videos, tmp / "idx", encoder, progress=False)
    service = load_service([str(tmp / "idx")])
    yield {"tmp": tmp, "videos": videos, "service": service,
           "client": TestClient(create_app(service), base_url=BASE)}
    service.close()


def test_file_endpoint_serves_only_ok_rows_of_the_indexed_inode(env):
    client, store = env["client"], env["service"].get(None).searcher.store
    ok_id, err_id = store.id_of("v0.mp4"), store.id_of("notes.mp4")
    assert store.info(err_id)["status"] == "error"
    assert client.get(f"/videos/zeroshot/{ok_id}/file").status_code == 200
    assert client.get(f"/videos/zeroshot/{err_id}/file").status_code == 404  # an error row: never served
    # v1.mp4 replaced (same name, inside the root) by a hard link to a file outside the collection
    v1 = store.id_of("v1.mp4")
    assert client.get(f"/videos/zeroshot/{v1}/file").status_code == 200
    os.unlink(env["videos"] / "v1.mp4")
    os.link(env["tmp"] / "outside.mp4", env["videos"] / "v1.mp4")
    res = client.get(f"/videos/zeroshot/{v1}/file")
    assert res.status_code == 404 and res.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    "url",
    ["/videos/zeroshot/99999999999999999999999999/file", "/videos/zeroshot/9223372036854775808/thumbnail.jpg",
     "/videos/zeroshot/-5/file"],
)
def test_huge_ids_are_4xx_json(env, url):
    res = env["client"].get(url)
    assert res.status_code == 422 and "detail" in res.json()


@pytest.mark.parametrize(
    "raw,status",
    [
        (b'{"like": 9223372036854775808}', 422),
        (b'{"like": 9223372036854775807}', 404),
        (b'{"query": "\\ud800"}', 422),
        (b'{"query": "x", "k": NaN}', 422),
        (b'{"query": "x", "k": Infinity}', 422),
        (b'{"query": "x", "adapter": "\\udfff"}', 422),
        (b'{"\\ud800": 1, "query": "x"}', 422),
        (b"[" * 5000 + b"]" * 5000, 400),  # RecursionError in the JSON parser: "error parsing the body"
    ],
)
def test_odd_json_is_4xx_never_500(env, raw, status):
    res = env["client"].post("/search", content=raw, headers={"content-type": "application/json"})
    assert res.status_code == status, res.text
    assert "detail" in json.loads(res.content)


def test_errors_never_echo_the_body(env):
    secret = "SECRET-" + "y" * 4000
    for raw in (json.dumps({"query": "x", "k": secret}), json.dumps({"query": "x", secret[:50]: 1}),
                '{"query": "' + secret + '"'):
        res = env["client"].post("/search", content=raw.encode(), headers={"content-type": "application/json"})
        assert 400 <= res.status_code < 500
        assert b"y" * 100 not in res.content and len(res.content) < 1500, res.content[:200]


def test_host_header_must_name_this_server(env):
    client = env["client"]
    for host in ("127.0.0.1:8000", "localhost", "LOCALHOST:80", "[::1]:8000"):
        assert client.get("/health", headers={"host": host}).status_code == 200, host
    for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example", "192.168.1.5:8000"):
        res = client.get("/health", headers={"host": host})
        assert res.status_code == 400 and "Host" in res.json()["detail"], host
    named = TestClient(create_app(env["service"], hosts=["box.lan"]), base_url="http://box.lan:8000")
    assert named.get("/health").status_code == 200
    assert named.get("/health", headers={"host": "evil.example"}).status_code == 400
    assert host_allowed("10.0.0.2:8000", {"localhost"}, any_ip=True)  # --host 0.0.0.0: IP literals only
    assert not host_allowed("rebind.example:8000", {"localhost"}, any_ip=True)
    assert not host_allowed(None, {"localhost"}, any_ip=True)


def test_body_limit_stops_reading_a_chunked_body():
    """The middleware pulls at most limit + one chunk, whatever the framing, and does not echo it."""
    pulled, sent = [], []

    async def app(scope, receive, send):  # pragma: no cover - must never be reached
        raise AssertionError("the app must not see an oversized body")

    async def receive():
        pulled.append(1)
        return {"type": "http.request", "body": b"x" * 1024, "more_body": True}  # endless chunked body

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "headers": [(b"host", b"127.0.0.1:8000"), (b"transfer-encoding", b"chunked")]}
    asyncio.run(Guard(app, limit=MAX_BODY_BYTES, allowed_hosts={"127.0.0.1"}, any_ip=False)(scope, receive, send))
    assert len(pulled) == MAX_BODY_BYTES // 1024 + 1
    assert sent[0]["status"] == 413
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert b"xxxx" not in body and len(body) < 200


def test_chunked_body_over_a_real_socket(env):
    """uvicorn + a 4 MB chunked upload: 413 after the limit, a short reply, no 4 MB read."""
    pytest.importorskip("uvicorn")
    with running_server(create_app(env["service"])) as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        chunks = (b'{"query": "' + b"x" * 4096 for _ in range(1024))  # 4 MB, no Content-Length
        start = time.perf_counter()
        try:
            conn.request("POST", "/search", body=chunks, encode_chunked=True,
                         headers={"content-type": "application/json", "host": f"127.0.0.1:{port}"})
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading and closed: what we want
        res = conn.getresponse()
        body = res.read()
        assert res.status == 413 and len(body) < 200 and b"xxxx" not in body
        assert time.perf_counter() - start < 20
        conn.close()


def test_reindex_follows_a_file_copied_in_place(tmp_path):
    """A file re-created with the same bytes, size and mtime (rsync, a restore) gets a new inode:
    the next `vop index` records it without re-encoding, and the server serves it again."""
    torch.set_num_threads(1)
    clip = build_clip("tiny", seed=0)
    videos = tmp_path / "videos"
    write_video(videos / "a.mp4", color_video(num_frames=6, size=32, seed=1))
    encoder = VideoEncoder.from_clip(clip, frames=2, backbone_source="tiny")
    build_index(videos, tmp_path / "idx", encoder, progress=False)
    st = (videos / "a.mp4").stat()
    copy = tmp_path / "copy.tmp"  # created while the original exists: surely another inode
    copy.write_bytes((videos / "a.mp4").read_bytes())
    os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(copy, videos / "a.mp4")
    from vop.index.search import Searcher

    searcher = Searcher(tmp_path / "idx")
    vid = searcher.store.id_of("a.mp4")
    assert searcher.file_of(vid) is None  # another inode than the one indexed
    searcher.close()
    report = build_index(videos, tmp_path / "idx", encoder, progress=False)
    assert (report.encoded, report.unchanged) == (0, 1)
    searcher = Searcher(tmp_path / "idx")
    assert searcher.file_of(vid) == (videos / "a.mp4").resolve()
    searcher.close()
