"""The FastAPI app: JSON API, thumbnails and videos by id, and the static web page.

Files are only ever looked up by an index id (``Searcher.served_file``), never from a client
path, and only for rows that decoded (status ok), inside the served root, whose file is still the
one indexed (device + inode; ``vop.index.served``). Inputs are bounded (query length, k, ids,
request body size counted as it arrives, whatever the framing, and the time the body may take);
the Host header must be well-formed and name this machine (DNS rebinding); errors are JSON with a
4xx status and never echo the request body, not even its field names.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from importlib import resources

from fastapi import FastAPI, HTTPException
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from vop import __version__
from vop.serve.files import CheckedFileResponse
from vop.serve.replies import json_reply
from vop.serve.service import SearchService

MAX_QUERY_CHARS = 500
MAX_K = 100
MAX_BODY_BYTES = 16 * 1024
MAX_ID = 2**63 - 1  # SQLite INTEGER: a larger id is no video, not an overflow
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
JPEG_MAGIC = b"\xff\xd8\xff"
BODY_TIMEOUT_S = 10.0  # the whole request body must arrive within this (a slow client is cut off)
# Host: a DNS name or IPv4 literal, or an [IPv6] literal, then an optional :port; nothing else
_HOST = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?))"
                   r"(?::(?P<port>[0-9]{1,5}))?")
REQUEST_FIELDS = frozenset({"body", "query", "path", "like", "k", "adapter", "name", "video_id"})


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not silently ignored
    query: str | None = Field(None, min_length=1, max_length=MAX_QUERY_CHARS)
    like: int | None = Field(None, ge=0, le=MAX_ID, description="id of an indexed video: find similar videos")
    k: int = Field(10, ge=1, le=MAX_K)
    adapter: str | None = Field(None, max_length=200)

    @field_validator("query", "adapter")
    @classmethod
    def _valid_unicode(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("must be valid Unicode text (no lone surrogates)") from None
        return value



def _clean(text, limit: int = 200) -> str:
    return str(text)[:limit].encode("utf-8", "replace").decode("utf-8")


def _field(part) -> str | int:
    """One part of a validation error's location: an index, a name of ours, or "?" (the client's)."""
    if isinstance(part, int) and not isinstance(part, bool):
        return part
    return part if part in REQUEST_FIELDS else "?"


def _host_name(host: str) -> str:
    """A ``--host`` / ``--allow-host`` value as :func:`parse_host` would read it."""
    host = host.strip().lower()
    return parse_host(host) or parse_host(f"[{host.strip('[]')}]") or host


def parse_host(host_header: str | None) -> str | None:
    """The host of a well-formed ``Host: name[:port]`` / ``[v6][:port]``, lowercased; else None.

    Strict on purpose: ``127.0.0.1:80@evil.com`` or ``[::1]evil.com`` are not read as loopback."""
    if not host_header:
        return None
    m = _HOST.fullmatch(host_header.strip(" \t"))
    if m is None or (m["port"] is not None and int(m["port"]) > 65535):
        return None
    if m["v6"] is not None:
        try:
            return str(ipaddress.IPv6Address(m["v6"]))
        except ValueError:
            return None
    return m["name"].lower()


def host_allowed(host_header: str | None, allowed: set[str], any_ip: bool) -> bool:
    """Is ``Host: name[:port]`` one of ``allowed`` (or, when bound to all interfaces, an IP literal)?"""
    host = parse_host(host_header)
    if host is None:
        return False
    if host in allowed:
        return True
    if any_ip:  # an IP literal cannot be rebound by DNS; a name could
        try:
            ipaddress.ip_address(host)
            return True
        except ValueError:
            return False
    return False


class Guard:
    """ASGI middleware: Host check, then the body read in full but never past ``limit`` bytes,
    counted as they arrive (Content-Length, chunked or anything else), and within ``timeout``
    seconds in all, then replayed to the app."""

    def __init__(self, app, limit: int, allowed_hosts: set[str], any_ip: bool,
                 timeout: float = BODY_TIMEOUT_S):
        self.app, self.limit, self.allowed_hosts, self.any_ip = app, limit, allowed_hosts, any_ip
        self.timeout = timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        send = _nosniff(send)
        raw = scope.get("headers", [])
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw}
        hosts = sum(k.lower() == b"host" for k, _ in raw)
        if hosts != 1 or not host_allowed(headers.get("host"), self.allowed_hosts, self.any_ip):
            return await json_reply(400, "Host header does not name this server (see vop serve --allow-host)")(
                scope, receive, send)
        length = headers.get("content-length")
        if length is not None and not length.strip().isdigit():
            return await json_reply(400, "malformed Content-Length")(scope, receive, send)
        if length is not None and int(length) > self.limit:
            return await json_reply(413, f"request body over {self.limit} bytes")(scope, receive, send)
        body = bytearray()
        deadline = asyncio.get_running_loop().time() + self.timeout
        while True:
            try:
                message = await asyncio.wait_for(receive(), deadline - asyncio.get_running_loop().time())
            except TimeoutError:  # a slow client: reply, and the connection is closed (Connection: close)
                return await json_reply(408, f"request body not received within {self.timeout:g} s",
                                   headers={"connection": "close"})(scope, receive, send)
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            if len(body) > self.limit:  # stop reading: the rest of the body is never looked at
                return await json_reply(413, f"request body over {self.limit} bytes")(scope, receive, send)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


def _nosniff(send):
    """``send`` that marks every reply ``X-Content-Type-Options: nosniff``: a browser takes the
    declared type (a thumbnail stays an image even if an index holds other bytes)."""

    async def wrapped(message):
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), (b"x-content-type-options", b"nosniff")]}
        await send(message)

    return wrapped


def create_app(service: SearchService, hosts: list[str] | tuple[str, ...] = (),
               body_timeout: float = BODY_TIMEOUT_S) -> FastAPI:
    """The app over ``service``'s collections (built by :func:`vop.serve.service.load_service`).

    ``hosts``: names the Host header may carry besides the loopback names (``--host`` and
    ``--allow-host``); ``0.0.0.0`` / ``::`` among them also allows any IP literal.
    ``body_timeout``: seconds a request body may take to arrive (408 after that).
    """
    app = FastAPI(title="vop search", version=__version__)
    static = resources.files("vop.serve") / "static"
    wildcard = {"0.0.0.0", "::", ""}
    allowed = {_host_name(h) for h in (*LOOPBACK_HOSTS, *hosts)} - wildcard
    app.add_middleware(Guard, limit=MAX_BODY_BYTES, allowed_hosts=allowed,
                       any_ip=any(h.strip("[]") in wildcard for h in hosts), timeout=body_timeout)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request, exc: RequestValidationError):
        # location and message only: the input (the client's own bytes) is never echoed, and
        # neither is a field name the client made up (it names "an unknown field" instead)
        errors = [
            {"loc": [_field(part) for part in e.get("loc", ())][:6],
             "msg": "unknown field (fields: query, like, k, adapter)" if e.get("type") == "extra_forbidden"
             else _clean(e.get("msg", ""))}
            for e in exc.errors()[:10]
        ]
        return json_reply(422, errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc: StarletteHTTPException):
        return json_reply(exc.status_code, _clean(exc.detail, 500))

    def collection(name: str | None):
        try:
            return service.get(name)
        except KeyError:
            raise HTTPException(404, f"unknown adapter; available: {', '.join(service.collections)}") from None

    @app.get("/health")
    def health():
        return {
            "status": "ok",
            "version": __version__,
            "videos": sum(len(c.searcher) for c in service.collections.values()),
        }

    @app.get("/adapters")
    def adapters():
        return {"default": service.default, "adapters": [c.describe() for c in service.collections.values()]}

    @app.post("/search")
    def search(req: SearchRequest):
        if (req.query is None) == (req.like is None):
            raise HTTPException(400, "give exactly one of 'query' (text) and 'like' (a video id)")
        c = collection(req.adapter)
        try:
            with service.lock:
                hits = (
                    c.searcher.search_text(req.query, req.k)
                    if req.query is not None
                    else c.searcher.search_like(req.like, req.k)
                )
        except KeyError:
            raise HTTPException(404, f"no indexed video with id {req.like}") from None
        base = f"/videos/{c.name}"
        results = [
            dict(rank=r, **h.to_dict(), thumbnail=f"{base}/{h.id}/thumbnail.jpg", video=f"{base}/{h.id}/file")
            for r, h in enumerate(hits, 1)
        ]
        return {"adapter": c.name, "query": req.query, "like": req.like, "k": req.k, "results": results}

    @app.get("/videos/{name}/{video_id}/thumbnail.jpg")
    def thumbnail(name: str, video_id: int = PathParam(ge=0, le=MAX_ID)):
        data = collection(name).searcher.thumbnail(video_id)
        if not data or not data.startswith(JPEG_MAGIC):  # vop index writes JPEGs; anything else is not one
            raise HTTPException(404, f"no thumbnail for video {video_id}")
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    @app.get("/videos/{name}/{video_id}/file")
    def video_file(name: str, video_id: int = PathParam(ge=0, le=MAX_ID)):
        found = collection(name).searcher.served_file(video_id)
        if found is None:
            raise HTTPException(404, f"video {video_id} is not in the index or its file is gone")
        return CheckedFileResponse(*found)  # Range requests supported, so the player can seek

    @app.get("/")
    def page():
        return FileResponse(str(static / "index.html"), media_type="text/html")

    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    return app
