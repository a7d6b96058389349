"""The retry policy and the circuit breaker of serving/backends/tfserving/resilience.py, on a
controlled clock (no servers: the server-facing behaviour is in test_tfserving_gateway)."""

import asyncio
import random

import pytest

from serving.backends.tfserving.resilience import (
    MAX_BACKOFF_SECONDS,
    BreakerState,
    CircuitBreaker,
    Deadline,
    RetryableUnavailable,
    backoff_seconds,
    call_resilient,
)
from serving.errors import BackendTimeout, BackendUnavailable, ModelNotFound


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Clock, threshold: int = 3, reset: float = 5.0) -> CircuitBreaker:
    return CircuitBreaker(
        "test server", failure_threshold=threshold, reset_seconds=reset, clock=clock
    )


def test_breaker_opens_after_consecutive_failures_only():
    clock = Clock()
    circuit = breaker(clock)
    for _ in range(2):
        circuit.acquire()
        circuit.record_failure()
    circuit.acquire()
    circuit.record_success()  # a success in between resets the count
    for _ in range(2):
        circuit.acquire()
        circuit.record_failure()
    assert circuit.state is BreakerState.CLOSED
    circuit.acquire()
    circuit.record_failure()
    assert circuit.state is BreakerState.OPEN


def test_open_breaker_fails_fast_with_the_time_left_as_retry_after():
    clock = Clock()
    circuit = breaker(clock, threshold=1, reset=5.0)
    circuit.acquire()
    circuit.record_failure()
    clock.now += 1.2

    with pytest.raises(BackendUnavailable) as raised:
        circuit.acquire()
    assert raised.value.headers["Retry-After"] == "4"  # 3.8 s left, rounded up


def test_half_open_lets_one_probe_through_and_its_outcome_decides():
    clock = Clock()
    circuit = breaker(clock, threshold=1, reset=5.0)
    circuit.acquire()
    circuit.record_failure()
    clock.now += 5.0
    assert circuit.state is BreakerState.HALF_OPEN

    circuit.acquire()  # the probe
    with pytest.raises(BackendUnavailable):
        circuit.acquire()  # everyone else waits for its verdict
    circuit.record_failure()
    assert circuit.state is BreakerState.OPEN  # failed probe: open for another period

    clock.now += 5.0
    circuit.acquire()
    circuit.record_success()
    assert circuit.state is BreakerState.CLOSED
    circuit.acquire()  # closed again: calls flow


def test_cancelled_probe_frees_the_half_open_slot():
    clock = Clock()
    circuit = breaker(clock, threshold=1, reset=1.0)
    circuit.acquire()
    circuit.record_failure()
    clock.now += 1.0
    circuit.acquire()
    circuit.release()  # no verdict (the caller went away)
    circuit.acquire()  # another call may probe


def test_backoff_is_jittered_exponential_and_capped():
    rng = random.Random(0)
    samples = [[backoff_seconds(n, 0.05, rng) for _ in range(200)] for n in range(6)]
    for n, attempt_samples in enumerate(samples):
        ceiling = min(MAX_BACKOFF_SECONDS, 0.05 * 2**n)
        assert all(0 <= s <= ceiling for s in attempt_samples)
        assert max(attempt_samples) > 0.8 * ceiling  # spread over the whole range
        assert len(set(attempt_samples)) == len(attempt_samples)  # jittered, not fixed


async def test_retries_only_retryable_failures_and_stops_at_the_bound():
    circuit = breaker(Clock(), threshold=100)
    calls = []

    async def unreachable(seconds_left: float):
        calls.append(seconds_left)
        raise RetryableUnavailable("connection refused")

    with pytest.raises(RetryableUnavailable):
        await call_resilient(
            unreachable,
            breaker=circuit,
            deadline=Deadline(5.0),
            retries=2,
            backoff_base_seconds=0.001,
        )
    assert len(calls) == 3

    async def unknown_version(seconds_left: float):
        calls.append(seconds_left)
        raise ModelNotFound("no version 7")

    calls.clear()
    with pytest.raises(ModelNotFound):
        await call_resilient(
            unknown_version,
            breaker=circuit,
            deadline=Deadline(5.0),
            retries=2,
            backoff_base_seconds=0.001,
        )
    assert len(calls) == 1


async def test_retries_never_outlast_the_deadline():
    circuit = breaker(Clock(), threshold=100)
    calls = []

    async def unreachable(seconds_left: float):
        calls.append(seconds_left)
        raise RetryableUnavailable("connection refused")

    deadline = Deadline(0.05)
    with pytest.raises(RetryableUnavailable):
        await call_resilient(
            unreachable,
            breaker=circuit,
            deadline=deadline,
            retries=10,
            backoff_base_seconds=0.04,
            rng=random.Random(1),
        )
    assert deadline.remaining() >= 0
    assert len(calls) < 11  # gave up when no backoff fitted
    assert calls == sorted(calls, reverse=True)  # each attempt got what was left


async def test_server_answers_count_as_success_and_unavailability_as_failure():
    circuit = breaker(Clock(), threshold=2)

    async def fails_with(error):
        async def attempt(seconds_left: float):
            raise error

        with pytest.raises(type(error)):
            await call_resilient(
                attempt,
                breaker=circuit,
                deadline=Deadline(1.0),
                retries=0,
                backoff_base_seconds=0.01,
            )

    await fails_with(BackendTimeout("slow"))
    await fails_with(ModelNotFound("no such version"))  # the server answered: resets
    await fails_with(BackendTimeout("slow"))
    assert circuit.state is BreakerState.CLOSED
    await fails_with(BackendUnavailable("down"))
    assert circuit.state is BreakerState.OPEN


async def test_a_cancelled_call_leaves_no_verdict():
    clock = Clock()
    circuit = breaker(clock, threshold=1, reset=1.0)
    circuit.acquire()
    circuit.record_failure()
    clock.now += 1.0
    started = asyncio.Event()

    async def hangs(seconds_left: float):
        started.set()
        await asyncio.Event().wait()

    probe = asyncio.create_task(
        call_resilient(
            hangs, breaker=circuit, deadline=Deadline(10.0), retries=0, backoff_base_seconds=0.01
        )
    )
    await started.wait()
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert circuit.state is BreakerState.HALF_OPEN
    circuit.acquire()  # the slot is free for the next probe
