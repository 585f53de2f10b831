"""Send one indexed video: the very file that was checked, with Range support and JSON errors.

``Searcher.served_file`` decides which file a row may serve (``vop.index.served``); between that
check and the read the file could be swapped, so :class:`CheckedFileResponse` opens it first
(never blocking on a FIFO), checks the open descriptor's device and inode, and reads only from
that descriptor. Range errors (400, 416) are JSON like every other error of the API.
"""

from __future__ import annotations

import json
import os
from contextlib import asynccontextmanager
from pathlib import PurePath

import anyio
from starlette.responses import FileResponse, guess_type

from vop.index.served import same_file
from vop.serve.replies import json_reply

RANGE_ERRORS = {400: "malformed Range header", 416: "Range not satisfiable"}
GONE = "the video's file changed since it was checked; try again"
# video suffixes the system's MIME table gets wrong or lacks (".ts" is often Qt's text format)
MEDIA_TYPES = {".ts": "video/mp2t", ".mts": "video/mp2t", ".m2ts": "video/mp2t", ".3gp": "video/3gpp",
               ".vob": "video/mpeg", ".divx": "video/x-msvideo", ".f4v": "video/mp4", ".asf": "video/x-ms-asf"}


def media_type(path) -> str:
    """A ``video/*`` type for an indexed file, else ``application/octet-stream`` (never text or HTML)."""
    suffix = PurePath(path).suffix.lower()
    kind = MEDIA_TYPES.get(suffix) or guess_type(f"x{suffix}")[0]
    return kind if kind and kind.startswith("video/") else "application/octet-stream"


class CheckedFileResponse(FileResponse):
    """A ``FileResponse`` read from one descriptor whose device and inode are ``file_id``."""

    def __init__(self, path, file_id: tuple[int, int], **kwargs):
        super().__init__(path, **{"media_type": media_type(path), **kwargs})
        self.file_id = file_id
        self._file = None

    async def __call__(self, scope, receive, send):
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)  # a FIFO: no wait
        try:
            fd = os.open(self.path, flags)
        except OSError:
            return await json_reply(404, GONE)(scope, receive, send)
        with os.fdopen(fd, "rb") as self._file:
            st = os.fstat(fd)
            if not same_file(st, self.file_id):
                return await json_reply(404, GONE)(scope, receive, send)
            self.stat_result = st
            self.set_stat_headers(st)
            # no "pathsend" shortcut: the server would reopen the path instead of using our descriptor
            scope = {**scope, "extensions": {k: v for k, v in scope.get("extensions", {}).items()
                                             if k != "http.response.pathsend"}}
            await super().__call__(scope, receive, _json_range_errors(send))

    @asynccontextmanager
    async def _open_file(self):
        yield anyio.wrap_file(self._file)  # closed by __call__, after the whole reply


def _json_range_errors(send):
    """``send`` that turns Starlette's text/plain 400/416 Range replies into JSON ones."""
    replaced = False

    async def wrapped(message):
        nonlocal replaced
        if message["type"] == "http.response.start" and message["status"] in RANGE_ERRORS:
            replaced = True
            status = message["status"]
            body = json.dumps({"detail": RANGE_ERRORS[status]}).encode()
            keep = [(k, v) for k, v in message.get("headers", []) if k.lower() == b"content-range"]
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode()), *keep]})
            await send({"type": "http.response.body", "body": body, "more_body": False})
        elif not replaced:  # the text body of a replaced reply is dropped
            await send(message)

    return wrapped
