"""uvicorn's HTTP protocol with TCP_NODELAY on every accepted connection.

asyncio's event loop enables TCP_NODELAY only on sockets whose `proto` is IPPROTO_TCP, and
uvicorn's own multi-worker mode binds its listening socket with `proto` 0 (uvicorn issue
#3149): Nagle's algorithm then holds each response's body until the client ACKs its
headers, and the client delays that ACK, a stall on every keep-alive request. The
gateway's supervisor hands workers sockets asyncio does recognise, but the option is set
here whatever the event loop (uvloop sets it itself) and however the socket reached the
server, so no way of running the app brings the stall back
(tests/serving/runtime/test_nodelay.py holds both paths to it).
"""

import asyncio
import contextlib
import socket

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _HttpProtocol
except ImportError:  # uvicorn without the [standard] extra: the pure-Python parser
    from uvicorn.protocols.http.h11_impl import H11Protocol as _HttpProtocol  # type: ignore


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):  # the peer may already be gone
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class NoDelayHttpProtocol(_HttpProtocol):
    """Pass as `uvicorn.run(http=NoDelayHttpProtocol)`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        set_nodelay(transport)
        super().connection_made(transport)
