"""Several gateway workers behind one port: the supervisor accepts every connection and
hands it to the ready worker holding the fewest open connections.

uvicorn's own multi-worker mode lets each worker accept from one shared socket, and the
worker that wakes first takes the whole burst: a load generator's keep-alive connections
end up split very unevenly between two workers (figures in docs/benchmarks.md), and the
busier worker's queue then sets the p99 (Node's cluster module hands connections out
from its primary for the same reason). Here the connection itself travels to the worker
(SCM_RIGHTS over a Unix socket); the worker serves it as its own and reports each close,
so the supervisor knows every worker's open connections. Connections wait in the listen
backlog until a worker is ready, and go only to workers that are.
"""

import contextlib
import logging
import select
import selectors
import signal
import socket
import struct
import subprocess
import sys
from dataclasses import dataclass

logger = logging.getLogger(__name__)

# The channel between the supervisor and one worker: a SOCK_SEQPACKET pair, one message a
# datagram. Supervisor -> worker: CONNECTION, with the accepted socket attached.
# Worker -> supervisor: READY once its app has started, then CLOSED + the number of
# connections it has closed so far (a running total: a lost report costs nothing).
CONNECTION = b"N"
READY = b"R"
CLOSED = b"C"
_CLOSED_TOTAL = struct.Struct("!Q")
CHANNEL_FD_ARGUMENT = "--channel-fd"

LISTEN_BACKLOG = 2048  # uvicorn's default
_ACCEPTS_PER_WAKEUP = 256  # then the workers' reports are read before accepting more


def closed_report(total: int) -> bytes:
    return CLOSED + _CLOSED_TOTAL.pack(total)


@dataclass
class Worker:
    process: subprocess.Popen
    channel: socket.socket  # the supervisor's end
    ready: bool = False
    has_been_ready: bool = False
    handed: int = 0  # connections handed to it
    closed: int = 0  # of those, closed (its last report)
    last_handed: int = 0  # the hand-over count when it last got one, to break ties

    @property
    def open_connections(self) -> int:
        return self.handed - self.closed


class Supervisor:
    """Runs `worker_command` (plus the channel's fd) `worker_count` times behind one
    listening socket on host:port."""

    def __init__(self, host: str, port: int, worker_count: int, worker_command: list[str]):
        self.host, self.port = host, port
        self.worker_count = worker_count
        self.worker_command = worker_command
        self.workers: list[Worker] = []
        self.handovers = 0
        self._stopping = False

    def run(self) -> int:
        """Serve until SIGTERM or SIGINT; the launcher's exit status."""
        try:
            self._listener = _listen(self.host, self.port)
        except OSError as error:
            logger.error("cannot listen on %s:%d: %s", self.host, self.port, error)
            return 1
        self._selector = selectors.DefaultSelector()
        wakeup, wakeup_write = socket.socketpair()
        for end in (wakeup, wakeup_write):
            end.setblocking(False)
        self._selector.register(wakeup, selectors.EVENT_READ, self._on_signal)
        # Signals arrive as bytes on `wakeup`, which wakes the select; the wakeup fd is
        # written only while a Python-level handler is installed, hence the no-op ones.
        previous_wakeup = signal.set_wakeup_fd(wakeup_write.fileno())
        previous_handlers = {
            sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        host, port = self._listener.getsockname()[:2]
        logger.info(
            "listening on %s:%d; %d workers, each connection to the least busy",
            host,
            port,
            self.worker_count,
        )
        try:
            for _ in range(self.worker_count):
                self.workers.append(self._start_worker())
            return self._supervise()
        finally:
            self._stop_workers(wakeup)
            signal.set_wakeup_fd(previous_wakeup)
            for sig, handler in previous_handlers.items():
                signal.signal(sig, handler)
            self._selector.close()
            self._listener.close()
            wakeup.close()
            wakeup_write.close()

    def _supervise(self) -> int:
        while not self._stopping:
            for key, _ in self._selector.select(timeout=0.5):
                key.data(key.fileobj)
            for slot, worker in enumerate(self.workers):
                if worker.process.poll() is None:
                    continue
                self._forget(worker)
                if not worker.has_been_ready:
                    # Before serving anything: a broken app or setting, which every new
                    # worker would repeat.
                    logger.error(
                        "worker [%d] exited with %s before it was ready; stopping",
                        worker.process.pid,
                        worker.process.returncode,
                    )
                    return 1
                logger.warning(
                    "worker [%d] exited with %s; starting another",
                    worker.process.pid,
                    worker.process.returncode,
                )
                self.workers[slot] = self._start_worker()
            self._listen_while_a_worker_is_ready()
        return 0

    def _start_worker(self) -> Worker:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            process = subprocess.Popen(
                [*self.worker_command, CHANNEL_FD_ARGUMENT, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
            )
        ours.setblocking(False)
        worker = Worker(process, ours)
        self._selector.register(ours, selectors.EVENT_READ, lambda _: self._on_report(worker))
        logger.info("started worker [%d]", process.pid)
        return worker

    def _on_report(self, worker: Worker) -> None:
        while True:
            try:
                message = worker.channel.recv(64)
            except BlockingIOError:
                return
            except OSError:
                message = b""
            if not message:  # the worker is gone; _supervise reaps it
                self._forget(worker)
                return
            if message == READY:
                worker.ready = worker.has_been_ready = True
                logger.info("worker [%d] ready", worker.process.pid)
            elif message[:1] == CLOSED and len(message) == 1 + _CLOSED_TOTAL.size:
                worker.closed = max(worker.closed, _CLOSED_TOTAL.unpack_from(message, 1)[0])
                logger.debug(
                    "worker [%d]: %d of %d connections closed",
                    worker.process.pid,
                    worker.closed,
                    worker.handed,
                )

    def _forget(self, worker: Worker) -> None:
        worker.ready = False
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(worker.channel)
        worker.channel.close()

    def _listen_while_a_worker_is_ready(self) -> None:
        """Connections stay in the backlog while no worker can take them."""
        any_ready = any(w.ready for w in self.workers)
        registered = self._listener.fileno() in self._selector.get_map()
        if any_ready and not registered:
            self._selector.register(self._listener, selectors.EVENT_READ, self._on_connections)
        elif not any_ready and registered:
            self._selector.unregister(self._listener)

    def _on_connections(self, listener: socket.socket) -> None:
        for _ in range(_ACCEPTS_PER_WAKEUP):
            try:
                connection, _ = listener.accept()
            except BlockingIOError:
                return
            except OSError as error:  # out of file descriptors, say: retried next wakeup
                logger.warning("accept failed: %s", error)
                return
            with connection:  # the worker holds its own copy once handed
                if not self._hand_over(connection):
                    logger.warning("no worker could take a connection; closed it")

    def _hand_over(self, connection: socket.socket) -> bool:
        ready = [w for w in self.workers if w.ready]
        for worker in sorted(ready, key=lambda w: (w.open_connections, w.last_handed)):
            try:
                socket.send_fds(worker.channel, [CONNECTION], [connection.fileno()])
            except OSError:  # its queue is full, or it is exiting: the next one
                continue
            self.handovers += 1
            worker.handed += 1
            worker.last_handed = self.handovers
            return True
        return False

    def _on_signal(self, wakeup: socket.socket) -> None:
        with contextlib.suppress(BlockingIOError):
            received = wakeup.recv(64)
            names = ", ".join(signal.Signals(number).name for number in received)
            logger.info("received %s; stopping the workers", names)
            self._stopping = True

    def _stop_workers(self, wakeup: socket.socket) -> None:
        """SIGTERM: each worker finishes the requests it has, as uvicorn does alone.
        A second signal meanwhile kills them."""
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(self._listener)
        self._listener.close()  # new connections are refused from here
        running = [w for w in self.workers if w.process.poll() is None]
        for worker in running:
            with contextlib.suppress(ProcessLookupError):
                worker.process.send_signal(signal.SIGTERM)
        while any(w.process.poll() is None for w in running):
            readable, _, _ = select.select([wakeup], [], [], 0.1)
            if readable and _drained(wakeup):
                logger.warning("second signal: killing the workers")
                for worker in running:
                    with contextlib.suppress(ProcessLookupError):
                        worker.process.kill()
        for worker in self.workers:
            worker.process.wait()
            self._forget(worker)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.create_server((host, port), family=family, backlog=LISTEN_BACKLOG)
    listener.setblocking(False)
    return listener


def _drained(wakeup: socket.socket) -> bool:
    with contextlib.suppress(BlockingIOError):
        return bool(wakeup.recv(64))
    return False


def worker_command(app: str, event_loop: str, log_level: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "serving.runtime.worker",
        "--app",
        app,
        "--loop",
        event_loop,
        "--log-level",
        log_level,
    ]
