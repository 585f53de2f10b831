"""The FastAPI app: JSON API, thumbnails and videos by id, and the static web page.

Files are only ever looked up by an index id (``Searcher.file_of``), never from a client path.
Inputs are bounded (query length, k, request body size); errors are JSON with a 4xx status.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from vop import __version__
from vop.serve.service import SearchService

MAX_QUERY_CHARS = 500
MAX_K = 100
MAX_BODY_BYTES = 16 * 1024


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not silently ignored
    query: str | None = Field(None, min_length=1, max_length=MAX_QUERY_CHARS)
    like: int | None = Field(None, ge=0, description="id of an indexed video: find similar videos")
    k: int = Field(10, ge=1, le=MAX_K)
    adapter: str | None = Field(None, max_length=200)


def create_app(service: SearchService) -> FastAPI:
    """The app over ``service``'s collections (built by :func:`vop.serve.service.load_service`)."""
    app = FastAPI(title="vop search", version=__version__)
    static = resources.files("vop.serve") / "static"

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return JSONResponse({"detail": f"request body over {MAX_BODY_BYTES} bytes"}, status_code=413)
        return await call_next(request)

    def collection(name: str | None):
        try:
            return service.get(name)
        except KeyError as err:
            raise HTTPException(404, str(err.args[0])) from None

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
        except KeyError as err:
            raise HTTPException(404, str(err.args[0])) from None
        base = f"/videos/{c.name}"
        results = [
            dict(rank=r, **h.to_dict(), thumbnail=f"{base}/{h.id}/thumbnail.jpg", video=f"{base}/{h.id}/file")
            for r, h in enumerate(hits, 1)
        ]
        return {"adapter": c.name, "query": req.query, "like": req.like, "k": req.k, "results": results}

    @app.get("/videos/{name}/{video_id}/thumbnail.jpg")
    def thumbnail(name: str, video_id: int):
        data = collection(name).searcher.thumbnail(video_id)
        if not data:
            raise HTTPException(404, f"no thumbnail for video {video_id}")
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    @app.get("/videos/{name}/{video_id}/file")
    def video_file(name: str, video_id: int):
        path = collection(name).searcher.file_of(video_id)
        if path is None:
            raise HTTPException(404, f"video {video_id} is not in the index or its file is gone")
        return FileResponse(path)  # Range requests supported, so the player can seek

    @app.get("/")
    def page():
        return FileResponse(str(static / "index.html"), media_type="text/html")

    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    return app
