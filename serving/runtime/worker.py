"""One worker under `serving.runtime.supervisor`: uvicorn serving the connections the supervisor
accepted and passed over the channel (`python -m serving.runtime.worker`, started by it)."""

import argparse
import asyncio
import contextlib
import socket

import uvicorn

from serving.runtime.launcher import uvicorn_options
from serving.runtime.supervisor import CHANNEL_FD_ARGUMENT, CONNECTION, READY, closed_report

_FDS_PER_RECEIVE = 64


class HandedConnectionsServer(uvicorn.Server):
    """uvicorn with no listening socket of its own: connections arrive over `channel`.

    Everything else is uvicorn's: the lifespan, keep-alive, and on SIGTERM a graceful
    shutdown that finishes the requests in flight."""

    def __init__(self, config: uvicorn.Config, channel: socket.socket) -> None:
        super().__init__(config)
        self.channel = channel
        self.closed_connections = 0
        self._adopting: set[asyncio.Task] = set()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])
        server = self

        class CountedProtocol(self.config.http_protocol_class):  # type: ignore[misc, name-defined]
            def connection_lost(self, exc: Exception | None) -> None:
                try:
                    super().connection_lost(exc)
                finally:
                    server._count_closed()

        self._protocol_class = CountedProtocol
        asyncio.get_running_loop().add_reader(self.channel.fileno(), self._receive)
        self._report(READY)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        asyncio.get_running_loop().remove_reader(self.channel.fileno())
        await super().shutdown(sockets=sockets)

    def _receive(self) -> None:
        while True:
            try:
                message, fds, _, _ = socket.recv_fds(self.channel, 16, _FDS_PER_RECEIVE)
            except BlockingIOError:
                return
            except OSError:
                message, fds = b"", []
            if not message and not fds:  # the supervisor is gone: stop as on SIGTERM
                asyncio.get_running_loop().remove_reader(self.channel.fileno())
                self.should_exit = True
                return
            for fd in fds:
                connection = socket.socket(fileno=fd)
                if message != CONNECTION:
                    connection.close()
                    continue
                task = asyncio.create_task(self._adopt(connection))
                self._adopting.add(task)
                task.add_done_callback(self._adopting.discard)

    async def _adopt(self, connection: socket.socket) -> None:
        def protocol() -> asyncio.Protocol:
            return self._protocol_class(
                config=self.config, server_state=self.server_state, app_state=self.lifespan.state
            )

        try:
            await asyncio.get_running_loop().connect_accepted_socket(protocol, connection)
        except OSError:  # the client left before it was served
            connection.close()
            self._count_closed()

    def _count_closed(self) -> None:
        self.closed_connections += 1
        self._report(closed_report(self.closed_connections))

    def _report(self, message: bytes) -> None:
        # A full channel drops this report; the next one carries the running total.
        with contextlib.suppress(OSError):
            self.channel.send(message)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(CHANNEL_FD_ARGUMENT, type=int, required=True)
    parser.add_argument("--app", required=True)
    parser.add_argument("--loop", required=True)
    parser.add_argument("--log-level", required=True)
    args = parser.parse_args()
    channel = socket.socket(fileno=args.channel_fd)
    channel.setblocking(False)
    config = uvicorn.Config(args.app, **uvicorn_options(args.loop, args.log_level))
    HandedConnectionsServer(config, channel).run(sockets=[])


if __name__ == "__main__":
    main()
