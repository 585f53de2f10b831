"""Hostile inputs to `vop serve`, round two (issue 28): a crafted index serves nothing outside its
root, the Host header is parsed strictly, errors are JSON and echo nothing, slow clients are cut
off. Real uvicorn servers on 127.0.0.1 (port 0), real index folders edited as an attacker would."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import sqlite3
import time
from pathlib import Path

import pytest
import torch
from conftest import color_video, running_server, write_video

from vop.backbone.clip import build_clip
from vop.backbone.loading import save_clip
from vop.cli import main
from vop.index.manifest import MANIFEST_NAME
from vop.index.search import Searcher
from vop.index.served import safe_relpath, serve_root, served_file
from vop.index.store import DB_NAME, IndexStore, VideoRow

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.routing import Route

from vop.serve.app import create_app, parse_host
from vop.serve.files import CheckedFileResponse
from vop.serve.service import load_service


def get(port: int, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"host": f"127.0.0.1:{port}", **(headers or {})})
        res = conn.getresponse()
        return res.status, {k.lower(): v for k, v in res.getheaders()}, res.read()
    finally:
        conn.close()


def raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
            if b"\r\n\r\n" in data and len(data) > data.index(b"\r\n\r\n") + 4:
                break
        return data


def file_id(path) -> str:
    st = os.stat(path)
    return f"{st.st_dev}:{st.st_ino}"


def put_row(index: Path, path: str, fid: str | None, like: str = "v0.mp4") -> int:
    """Add a row to ``index`` as an attacker would: status ok, a real vector, any path and file_id."""
    with IndexStore(index / DB_NAME) as store:
        vector = store.vector(store.id_of(like))
        store.put(VideoRow(path=path, size=1, mtime_ns=1, status="ok", vector=vector, file_id=fid))
        return store.id_of(path)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile_serve2")
    torch.set_num_threads(1)
    backbone = save_clip(build_clip("tiny", seed=0), tmp / "tiny.safetensors")
    videos = tmp / "videos"
    for i in range(2):
        write_video(videos / f"v{i}.mp4", color_video(num_frames=6, size=32, seed=i))
    outside = write_video(tmp / "outside.mp4", color_video(num_frames=6, size=32, seed=7))
    idx = tmp / "idx"
    # the normal path: `vop index DIR --out IDX`, then serve IDX with no other flag
    assert main(["index", str(videos), "--backbone", str(backbone), "--frames", "2", "--out", str(idx),
                 "--quiet"]) == 0
    with IndexStore(idx / DB_NAME) as store:
        rows = {"v0": store.id_of("v0.mp4")}
    shutil.copytree(idx, tmp / "idx-slash")
    rows["dotdot"] = put_row(idx, "../outside.mp4", file_id(outside))
    rows["absolute"] = put_row(idx, str(outside), file_id(outside))
    (videos / "link.mp4").symlink_to(outside)
    rows["link"] = put_row(idx, "link.mp4", file_id(outside))
    shutil.copy(videos / "v1.mp4", videos / "copy.mp4")
    rows["no_file_id"] = put_row(idx, "copy.mp4", None)
    rows["bad_file_id"] = put_row(idx, "v1.mp4/../v0.mp4", file_id(videos / "v0.mp4"))
    os.mkfifo(videos / "pipe.mp4")
    rows["fifo"] = put_row(idx, "pipe.mp4", file_id(videos / "pipe.mp4"))
    # a manifest whose root is "/" and rows that name /etc/passwd, with its real device and inode
    slash = tmp / "idx-slash"
    manifest = json.loads((slash / MANIFEST_NAME).read_text())
    (slash / MANIFEST_NAME).write_text(json.dumps({**manifest, "root": "/"}))
    rows["passwd"] = put_row(slash, "etc/passwd", file_id("/etc/passwd"))
    rows["passwd_up"] = put_row(slash, "../../../../../../etc/passwd", file_id("/etc/passwd"))
    service = load_service([f"good={idx}", f"slash={slash}"])
    with running_server(create_app(service)) as port:
        yield {"tmp": tmp, "videos": videos, "idx": idx, "backbone": backbone, "rows": rows, "port": port,
               "service": service}
    service.close()


def test_the_normal_path_serves_the_indexed_file(env):
    status, headers, body = get(env["port"], f"/videos/good/{env['rows']['v0']}/file")
    assert status == 200 and body == (env["videos"] / "v0.mp4").read_bytes()
    assert headers["content-type"] == "video/mp4"


@pytest.mark.parametrize("row", ["dotdot", "absolute", "link", "no_file_id", "bad_file_id", "fifo"])
def test_crafted_rows_serve_nothing(env, row):
    status, headers, body = get(env["port"], f"/videos/good/{env['rows'][row]}/file")
    assert status == 404 and headers["content-type"] == "application/json", (row, body[:100])
    assert b"root:" not in body and len(body) < 300


@pytest.mark.parametrize("row", ["passwd", "passwd_up"])
def test_a_manifest_rooted_at_slash_serves_nothing(env, row):
    status, _, body = get(env["port"], f"/videos/slash/{env['rows'][row]}/file")
    assert status == 404 and b"root:" not in body
    assert env["service"].get("slash").searcher.served_root is None


def test_even_an_explicit_root_of_slash_serves_no_passwd(env):
    searcher = Searcher(env["tmp"] / "idx-slash", root="/")
    try:
        assert searcher.served_root == Path("/")
        assert searcher.file_of(env["rows"]["passwd"]) is None  # not a video name
        assert searcher.file_of(env["rows"]["passwd_up"]) is None  # `..`
    finally:
        searcher.close()


def test_rows_without_a_file_id_are_served_after_the_next_index_run(env, tmp_path):
    """An index written before file ids existed: nothing served until `vop index` records them."""
    videos = tmp_path / "videos"
    write_video(videos / "a.mp4", color_video(num_frames=6, size=32, seed=3))
    idx = tmp_path / "idx"
    argv = ["index", str(videos), "--backbone", str(env["backbone"]), "--frames", "2", "--out", str(idx), "--quiet"]
    assert main(argv) == 0
    with IndexStore(idx / DB_NAME) as store:
        store.set_file_ids({"a.mp4": None})
    searcher = Searcher(idx)
    assert searcher.file_of(searcher.store.id_of("a.mp4")) is None
    searcher.close()
    assert main(argv) == 0
    searcher = Searcher(idx)
    assert searcher.file_of(searcher.store.id_of("a.mp4")) == (videos / "a.mp4").resolve()
    searcher.close()


def test_a_moved_collection_is_served_with_root(env, tmp_path):
    videos = tmp_path / "videos"
    write_video(videos / "a.mp4", color_video(num_frames=6, size=32, seed=4))
    idx = tmp_path / "idx"
    assert main(["index", str(videos), "--backbone", str(env["backbone"]), "--frames", "2", "--out", str(idx),
                 "--quiet"]) == 0
    videos.rename(tmp_path / "moved")  # same inodes, another folder
    service = load_service([str(idx)])
    vid = service.get(None).searcher.store.id_of("a.mp4")
    assert service.get(None).searcher.file_of(vid) is None
    assert "not a folder" in service.get(None).searcher.no_files_because
    service.close()
    service = load_service([str(idx)], roots=[str(tmp_path / "moved")])
    assert service.get(None).searcher.file_of(vid) == (tmp_path / "moved" / "a.mp4").resolve()
    service.close()
    with pytest.raises(NotADirectoryError, match="--root"):
        load_service([str(idx)], roots=[str(tmp_path / "nope")])
    with pytest.raises(ValueError, match="no served index is called 'other'"):
        load_service([str(idx)], roots=[f"other={tmp_path / 'moved'}"])


def test_serve_root_and_row_paths():
    assert serve_root("/")[0] is None and serve_root("relative/dir")[0] is None
    assert serve_root("/no/such/folder/at/all")[0] is None
    for bad in ("../a.mp4", "/a.mp4", "a/../b.mp4", "a//b.mp4", "./a.mp4", "a.txt", "a.mp4\x00", "", None, 5):
        assert safe_relpath(bad) is None, bad
    assert str(safe_relpath("sub/a b.MP4")) == "sub/a b.MP4"
    assert served_file(Path("/"), {"status": "error", "path": "a.mp4", "file_id": "1:2"}) is None


def test_a_file_swapped_after_the_check_is_not_sent(env, tmp_path):
    """The response re-checks the descriptor it reads: a file replaced between the check and the
    read gives a JSON 404, not the new bytes."""
    videos = env["videos"]
    write_video(videos / "swap.mp4", color_video(num_frames=6, size=32, seed=5))
    searcher = env["service"].get("good").searcher
    vid = put_row(env["idx"], "swap.mp4", file_id(videos / "swap.mp4"))
    found = searcher.served_file(vid)
    assert found is not None
    other = tmp_path / "other.mp4"
    other.write_bytes(b"SECRET" * 100)
    os.replace(other, videos / "swap.mp4")  # after the check, before the read
    app = Starlette(routes=[Route("/f", lambda request: CheckedFileResponse(*found))])
    res = TestClient(app).get("/f")
    assert res.status_code == 404 and res.headers["content-type"] == "application/json"
    assert b"SECRET" not in res.content


def test_range_errors_are_json(env):
    url = f"/videos/good/{env['rows']['v0']}/file"
    size = (env["videos"] / "v0.mp4").stat().st_size
    status, headers, body = get(env["port"], url, {"range": "bytes=0-9"})
    assert status == 206 and len(body) == 10
    for value, code in (("bytes=abc", 400), ("pages=0-1", 400), (f"bytes={size + 10}-", 416),
                        ("bytes=5-2", 400)):
        status, headers, body = get(env["port"], url, {"range": value})
        assert status == code and headers["content-type"] == "application/json", (value, status, body)
        assert "detail" in json.loads(body)
        if code == 416:
            assert headers["content-range"] == f"bytes */{size}"


@pytest.mark.parametrize("host", [
    "127.0.0.1:80@evil.com", "[::1]evil.com", "127.0.0.1:99999", "127.0.0.1:", "[::1", "::1",
    "127.0.0.1 evil.com", "127.0.0.1:80:80", "evil.com#127.0.0.1", "localhost/x", "[127.0.0.1]", "",
])
def test_malformed_host_headers_are_400(env, host):
    reply = raw(env["port"], b"GET /health HTTP/1.1\r\nHost: " + host.encode() + b"\r\nConnection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400"), (host, reply[:120])


def test_host_parsing():
    assert parse_host("127.0.0.1:8000") == "127.0.0.1" and parse_host("LocalHost") == "localhost"
    assert parse_host("[::1]:80") == "::1" and parse_host("[0:0::1]") == "::1"
    for bad in ("127.0.0.1:80@evil.com", "[::1]evil.com", "a..b:1\n", "h:1:2", "[::g]", "-a.com", None):
        assert parse_host(bad) is None, bad


def test_two_host_headers_are_400(env):
    port = env["port"]
    reply = raw(port, f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nHost: evil.com\r\n"
                      f"Connection: close\r\n\r\n".encode())
    assert reply.startswith(b"HTTP/1.1 400"), reply[:120]
    assert raw(port, f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
                     .encode()).startswith(b"HTTP/1.1 200")


def test_422_echoes_no_field_name_or_value(env):
    port = env["port"]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for body in ({"query": "x", "FIELDNAME_SECRET": 1}, {"query": "x", "k": "VALUE_SECRET"},
                 {"query": "x", "k": {"NESTED_SECRET": 1}}):
        conn.request("POST", "/search", body=json.dumps(body),
                     headers={"host": f"127.0.0.1:{port}", "content-type": "application/json"})
        res = conn.getresponse()
        reply = res.read()
        assert res.status == 422 and b"SECRET" not in reply, reply
        assert json.loads(reply)["detail"][0]["loc"][0] == "body"
    conn.close()


def test_slow_clients_are_cut_off(env):
    """32 connections that never finish their request (nothing sent, headers dripped a byte at a
    time, a body that stops short) are all closed by the server, with 1 s deadlines configured."""
    app = create_app(env["service"], body_timeout=1.0)
    with running_server(app, header_timeout=1.0) as port:
        silent = [socket.create_connection(("127.0.0.1", port), timeout=15) for _ in range(12)]
        drip = [socket.create_connection(("127.0.0.1", port), timeout=15) for _ in range(10)]
        body = [socket.create_connection(("127.0.0.1", port), timeout=15) for _ in range(10)]
        for s in body:
            s.sendall(f"POST /search HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                      f"Content-Length: 100\r\n\r\n{{\"query\"".encode())
        request = f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode()  # never the final CRLF
        start = time.monotonic()
        closed_at: dict[int, float] = {}
        for i in range(40):  # one byte per connection every 0.1 s: 4 s at most
            for s in drip:
                if id(s) not in closed_at:
                    try:
                        s.sendall(request[i % len(request):][:1])
                    except OSError:
                        closed_at[id(s)] = time.monotonic() - start
            if len(closed_at) == len(drip):
                break
            time.sleep(0.1)
        replies = []
        for s in silent + drip + body:
            s.settimeout(10)
            try:
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
            except ConnectionResetError:
                data = b"(reset)"
            replies.append(data)
            s.close()
        elapsed = time.monotonic() - start
        assert all(r == b"" or r == b"(reset)" for r in replies[:22]), replies[:22]  # closed, no reply
        assert all(r.startswith(b"HTTP/1.1 408") for r in replies[22:]), replies[22:]
        assert elapsed < 12  # deadlines of 1 s: all gone long before the 40 s of the hostile test
        assert get(port, "/health")[0] == 200  # and the server still answers


def test_serve_cli_refuses_a_root_that_is_not_a_folder(env, tmp_path, capsys):
    assert main(["serve", str(env["idx"]), "--root", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vop serve: error: --root ") and "is not a folder" in err[0]


def test_a_crafted_thumbnail_is_not_served_and_nothing_is_sniffed(env):
    vid = put_row(env["idx"], "html.mp4", None)
    con = sqlite3.connect(env["idx"] / DB_NAME)  # edited as an attacker would, outside vop
    with con:
        con.execute("UPDATE videos SET thumbnail = ? WHERE id = ?", (b"<html><script>alert(1)</script>", vid))
    con.close()
    status, headers, body = get(env["port"], f"/videos/good/{vid}/thumbnail.jpg")
    assert status == 404 and b"script" not in body and headers["x-content-type-options"] == "nosniff"
    status, headers, body = get(env["port"], f"/videos/good/{env['rows']['v0']}/thumbnail.jpg")
    assert status == 200 and body.startswith(b"\xff\xd8\xff") and headers["x-content-type-options"] == "nosniff"


def test_served_files_are_typed_as_video():
    from vop.index.discover import VIDEO_EXTENSIONS
    from vop.serve.files import media_type

    for suffix in VIDEO_EXTENSIONS:
        assert media_type(f"a{suffix}").startswith("video/"), suffix
    assert media_type("a.html") == "application/octet-stream"
