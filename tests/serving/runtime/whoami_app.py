"""A small ASGI app for the supervisor's tests: each answer names the worker's pid.

`/slow?seconds=S` answers after S seconds (a request in flight at shutdown);
WHOAMI_STARTUP_SECONDS delays the app's start-up (a worker not ready yet)."""

import asyncio
import json
import os
from urllib.parse import parse_qs


def create_app():
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await asyncio.sleep(float(os.environ.get("WHOAMI_STARTUP_SECONDS", "0")))
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        if scope["path"] == "/slow":
            query = parse_qs(scope["query_string"].decode())
            await asyncio.sleep(float(query.get("seconds", ["1"])[0]))
        body = json.dumps({"pid": os.getpid()}).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app
