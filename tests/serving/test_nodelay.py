"""Accepted connections get TCP_NODELAY even on a socket bound the multi-worker way.

uvicorn's multi-worker supervisor binds the listening socket itself (`Config.bind_socket`,
proto 0) and hands it to each worker; this reproduces that path in-process and reads the
option on the server's side of a live keep-alive connection.
"""

import socket
import threading

import httpx
import pytest
import uvicorn

from serving.nodelay import NoDelayHttpProtocol


def serve_in_thread(config: uvicorn.Config) -> tuple[uvicorn.Server, str, threading.Thread]:
    server = uvicorn.Server(config)
    sock = config.bind_socket()  # exactly what `uvicorn --workers N` passes to its workers
    sock.listen()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    return server, url, thread


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_accepted_connections_have_tcp_nodelay_with_a_prebound_socket(loop):
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
    server, url, thread = serve_in_thread(config)
    server_holder.append(server)
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            first = client.get("/")
            second = client.get("/")  # the same keep-alive connection
        assert first.text == "1"
        assert second.text == "1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
