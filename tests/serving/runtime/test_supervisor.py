"""Several workers behind one port (`serving.runtime.supervisor`), driven through the launcher as
`GATEWAY_WORKERS` > 1 runs it, with a small app whose answers name the worker."""

import json
import os
import re
import signal
import socket
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.utils.gateway_process import GatewayProcess

WHOAMI = "tests.serving.runtime.whoami_app:create_app"


class Supervised(GatewayProcess):
    """The launcher with `workers` workers of `app`, logging to `log_path`."""

    def __init__(self, log_path: Path, workers: int = 2, app: str = WHOAMI, **env: str) -> None:
        launcher = (
            "import sys; from serving.runtime.launcher import serve; "
            "from serving.settings import load_settings; "
            f"sys.exit(serve(load_settings(), app={app!r}))"
        )
        super().__init__(
            {"GATEWAY_WORKERS": str(workers), **env}, log_path, [sys.executable, "-c", launcher]
        )
        self.workers = workers

    def ready_workers(self) -> list[int]:
        return [int(pid) for pid in re.findall(r"worker \[(\d+)\] ready", self.log())]

    def wait_for_log(self, pattern: str, count: int = 1, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(re.findall(pattern, self.log())) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"never logged {pattern!r} {count}x:\n{self.log()}")
            time.sleep(0.05)

    def wait_ready(self) -> None:
        self.wait_for_log(r"worker \[\d+\] ready", self.workers)

    def exit_status(self, timeout: float = 30) -> int:
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self._log.close()


@pytest.fixture
def supervised(tmp_path):
    started = []

    def start(**kwargs) -> Supervised:
        server = Supervised(tmp_path / f"launcher-{len(started)}.log", **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def pid_of(client: httpx.Client, path: str = "/") -> int:
    response = client.get(path)
    assert response.status_code == 200
    return response.json()["pid"]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by a parent) is gone for our purposes.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ", 1)[1][0] != "Z"


class Gate:
    """A port on 127.0.0.1 where the whoami app waits (see whoami_app): `wait_for(n)`
    returns once n of its callers are there, with their pids; `open()` lets them on."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        # Generous: the launcher warms up the preprocessing kernels before any worker.
        self._listener.settimeout(180)
        self.port = self._listener.getsockname()[1]
        self._waiting: list[socket.socket] = []

    def wait_for(self, count: int) -> list[int]:
        pids = []
        for _ in range(count):
            caller, _ = self._listener.accept()
            caller.settimeout(60)
            self._waiting.append(caller)
            line = b""
            while not line.endswith(b"\n"):
                chunk = caller.recv(64)
                assert chunk, "the caller left the gate"
                line += chunk
            pids.append(int(line))
        return pids

    def open(self) -> None:
        for caller in self._waiting:
            caller.sendall(b"go\n")

    def __enter__(self) -> "Gate":
        return self

    def __exit__(self, *exc_info) -> None:
        for caller in self._waiting:
            caller.close()
        self._listener.close()


def _read_to_end(connection: socket.socket) -> bytes:
    chunks = []
    while chunk := connection.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def wait_until(condition, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_connections_are_spread_evenly_over_the_workers(supervised):
    server = supervised(workers=2)
    server.wait_ready()
    clients = [httpx.Client(base_url=server.url, timeout=10) for _ in range(8)]
    try:
        # Eight keep-alive connections, each asked twice: the answer comes from the
        # worker it was handed to, and stays there.
        first = [pid_of(client) for client in clients]
        second = [pid_of(client) for client in clients]
    finally:
        for client in clients:
            client.close()
    assert first == second
    assert sorted(Counter(first).values()) == [4, 4]
    assert set(first) == set(server.ready_workers())


def test_the_worker_whose_connections_closed_gets_the_next_ones(supervised):
    server = supervised(workers=2, GATEWAY_LOG_LEVEL="debug")
    server.wait_ready()
    clients = [httpx.Client(base_url=server.url, timeout=10) for _ in range(4)]
    pids = [pid_of(client) for client in clients]
    freed = pids[0]
    assert sorted(Counter(pids).values()) == [2, 2]
    for client, pid in zip(clients, pids, strict=True):
        if pid == freed:
            client.close()
    # The worker reports the closes as it sees the clients' FINs; the supervisor says
    # (at debug level) when it has counted them.
    server.wait_for_log(rf"worker \[{freed}\]: 2 of 2 connections closed")
    newcomers = [httpx.Client(base_url=server.url, timeout=10) for _ in range(2)]
    try:
        assert [pid_of(client) for client in newcomers] == [freed, freed]
    finally:
        for client in clients + newcomers:
            client.close()


def test_connections_made_before_any_worker_is_ready_wait_and_are_served(supervised):
    with Gate() as gate:
        server = supervised(workers=2, WHOAMI_START_GATE=str(gate.port))
        starting = gate.wait_for(2)  # both workers are inside their app's start-up
        # Not refused while the workers start: the connection waits in the listen
        # backlog, and so does a request sent on it.
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as connection:
            connection.sendall(b"GET / HTTP/1.1\r\nHost: whoami\r\nConnection: close\r\n\r\n")
            assert server.ready_workers() == []  # none can be before the gate opens
            gate.open()
            response = _read_to_end(connection)
    head, body = response.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 ")
    pid = json.loads(body)["pid"]
    assert pid in starting
    assert pid in server.ready_workers()


def test_a_worker_that_dies_is_replaced_while_the_other_keeps_serving(supervised):
    server = supervised(workers=2)
    server.wait_ready()
    with (
        httpx.Client(base_url=server.url, timeout=10) as on_first,
        httpx.Client(base_url=server.url, timeout=10) as on_second,
    ):
        victim, survivor = pid_of(on_first), pid_of(on_second)
        assert victim != survivor
        os.kill(victim, signal.SIGKILL)
        # Every new connection from now on is served: none is handed to the dead worker.
        answered_by = Counter()
        deadline = time.monotonic() + 60
        while len(answered_by) < 2:
            assert time.monotonic() < deadline, f"no replacement worker:\n{server.log()}"
            with httpx.Client(base_url=server.url, timeout=10) as fresh:
                answered_by[pid_of(fresh)] += 1
            assert pid_of(on_second) == survivor  # its connection was never disturbed
    assert victim not in answered_by
    assert survivor in answered_by
    assert f"worker [{victim}] exited with -9; starting another" in server.log()


def test_sigterm_finishes_the_request_in_flight_then_exits_zero(supervised):
    server = supervised(workers=2)
    server.wait_ready()
    workers = server.ready_workers()
    answer: dict = {}
    with Gate() as gate:

        def blocked_request() -> None:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                answer["response"] = client.get("/block", params={"gate": gate.port})

        requester = threading.Thread(target=blocked_request)
        requester.start()
        [busy] = gate.wait_for(1)  # the request is in a worker now
        server.process.send_signal(signal.SIGTERM)
        server.wait_for_log(rf"\[{busy}\] uvicorn.error: Waiting for connections to close")
        # Draining: the request is held, the launcher up, new connections refused.
        assert "response" not in answer
        assert server.process.poll() is None
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", server.port)).close()
        gate.open()
        requester.join(timeout=60)
    assert answer["response"].status_code == 200
    assert answer["response"].json() == {"pid": busy}
    assert server.exit_status() == 0
    assert not any(alive(pid) for pid in workers)
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.1", server.port)),
    ):
        pass


def test_workers_exit_when_the_supervisor_is_killed(supervised):
    server = supervised(workers=2)
    server.wait_ready()
    workers = server.ready_workers()
    server.process.kill()
    server.process.wait()
    wait_until(lambda: not any(alive(pid) for pid in workers))


def test_an_app_that_cannot_start_stops_the_launcher_instead_of_restarting_it(supervised):
    server = supervised(workers=2, app="tests.serving.runtime.whoami_app:no_such_factory")
    assert server.exit_status(timeout=60) == 1
    log = server.log()
    assert "before it was ready; stopping" in log
    assert len(re.findall(r"started worker", log)) == 2  # no restart loop


def test_a_port_in_use_is_one_clear_error(supervised):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        server = supervised(workers=2, GATEWAY_PORT=str(taken.getsockname()[1]))
        assert server.exit_status() == 1
    log = server.log()
    assert "cannot listen on 127.0.0.1" in log
    assert "Traceback" not in log
    assert "started worker" not in log
