"""Accepted connections get TCP_NODELAY however the socket reached the server.

Two paths: a listening socket bound the way uvicorn's own multi-worker mode binds it
(`Config.bind_socket`, proto 0, which asyncio does not take for TCP), and connections
handed over by the gateway's supervisor to `serving.runtime.worker`. Each is reproduced
in-process and the option is read on the server's side of a live keep-alive connection.
"""

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn

from serving.runtime.nodelay import NoDelayHttpProtocol
from serving.runtime.supervisor import CONNECTION
from serving.runtime.worker import HandedConnectionsServer


@contextmanager
def running(server: uvicorn.Server, sockets: list[socket.socket]) -> Iterator[None]:
    thread = threading.Thread(target=server.run, kwargs={"sockets": sockets}, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert not thread.is_alive()


@contextmanager
def prebound(config: uvicorn.Config) -> Iterator[tuple[uvicorn.Server, str]]:
    server = uvicorn.Server(config)
    sock = config.bind_socket()  # exactly what `uvicorn --workers N` passes to its workers
    sock.listen()
    with running(server, [sock]):
        yield server, f"http://127.0.0.1:{sock.getsockname()[1]}"


@contextmanager
def handed_over(config: uvicorn.Config) -> Iterator[tuple[uvicorn.Server, str]]:
    """A worker fed as the supervisor feeds it: accepted here, the socket passed over."""
    supervisor_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    worker_end.setblocking(False)
    server = HandedConnectionsServer(config, worker_end)
    listener = socket.create_server(("127.0.0.1", 0))

    def hand_over_one() -> None:
        connection, _ = listener.accept()
        with connection:
            socket.send_fds(supervisor_end, [CONNECTION], [connection.fileno()])

    handing = threading.Thread(target=hand_over_one, daemon=True)
    handing.start()
    with listener, supervisor_end, worker_end, running(server, []):
        yield server, f"http://127.0.0.1:{listener.getsockname()[1]}"
    handing.join(timeout=10)


@pytest.mark.parametrize("serving", [prebound, handed_over])
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_accepted_connections_have_tcp_nodelay(loop, serving):
    server_holder: list[uvicorn.Server] = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        flags = [
            connection.transport.get_extra_info("socket").getsockopt(
                socket.IPPROTO_TCP, socket.TCP_NODELAY
            )
            for connection in server_holder[0].server_state.connections
        ]
        body = ",".join(str(int(bool(flag))) for flag in flags).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, loop=loop, http=NoDelayHttpProtocol, log_level="warning"
    )
    with serving(config) as (server, url), httpx.Client(base_url=url, timeout=10) as client:
        server_holder.append(server)
        first = client.get("/")
        second = client.get("/")  # the same keep-alive connection
    assert first.text == "1"
    assert second.text == "1"
