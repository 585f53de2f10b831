"""The HTTP server under the app: uvicorn's h11 protocol with a deadline for request headers.

uvicorn closes an idle keep-alive connection, but not one that sends its request slowly (a
byte now and then, or nothing after connecting): enough such clients hold every connection
open. :class:`DeadlineH11Protocol` closes a connection whose request line and headers have not
all arrived within ``header_timeout`` seconds of the connection (or of the previous reply);
the body's own deadline is the app's (``vop.serve.app.Guard``, 408).
"""

from __future__ import annotations

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_S = 10.0
KEEP_ALIVE_S = 5


class DeadlineH11Protocol(H11Protocol):
    header_timeout = HEADER_TIMEOUT_S

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._header_timer = None
        self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if getattr(self, "_header_timer", None) is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the whole request head arrived
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request on this connection gets its own deadline

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def server_config(app, host: str, port: int, header_timeout: float = HEADER_TIMEOUT_S,
                  log_level: str = "warning") -> uvicorn.Config:
    """The uvicorn configuration ``vop serve`` runs (tests use it with short timeouts).

    uvicorn installs no log handlers of its own (``log_config=None``): its records go to the
    root logger, which ``vop serve`` routes through ``vop.cli.messages.log_to_stderr``."""
    protocol = type("DeadlineH11", (DeadlineH11Protocol,), {"header_timeout": header_timeout})
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, http=protocol,
                          timeout_keep_alive=KEEP_ALIVE_S, log_config=None)
