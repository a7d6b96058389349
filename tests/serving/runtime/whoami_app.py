"""A small ASGI app for the supervisor's tests: each answer names the worker's pid.

Gates let a test order events by what happened, never by waiting a while. A gate is a
port on 127.0.0.1 that the test listens on: the app connects to it and sends its pid
when it gets there (so the test knows), then waits until the test answers.
- WHOAMI_START_GATE=PORT: the app's start-up, and so the worker's readiness, waits there;
- `/block?gate=PORT`: the request waits there, inside the worker.
"""

import asyncio
import json
import os
from urllib.parse import parse_qs


async def pass_gate(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"{os.getpid()}\n".encode())
        await writer.drain()
        await reader.readline()
    finally:
        writer.close()


def create_app():
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    if gate := os.environ.get("WHOAMI_START_GATE"):
                        await pass_gate(int(gate))
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        if scope["path"] == "/block":
            await pass_gate(int(parse_qs(scope["query_string"].decode())["gate"][0]))
        body = json.dumps({"pid": os.getpid()}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app
