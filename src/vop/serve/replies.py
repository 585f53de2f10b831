"""The one shape of every error reply: ``{"detail": ...}`` as JSON with a 4xx status."""

from __future__ import annotations

import json

from starlette.responses import Response


def json_reply(status: int, detail, headers: dict[str, str] | None = None) -> Response:
    """A JSON error reply that cannot fail to encode (no NaN, no lone surrogates, ASCII only)."""
    body = json.dumps({"detail": detail}, ensure_ascii=True, allow_nan=False).encode()
    return Response(body, status_code=status, media_type="application/json", headers=headers)
