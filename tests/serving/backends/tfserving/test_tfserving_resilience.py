"""The retry policy and the circuit breaker of serving/backends/tfserving/resilience.py, on a
controlled clock (no servers: the server-facing behaviour is in test_tfserving_gateway)."""

import asyncio
import random
import types

import pytest

from serving.backends.tfserving import resilience
from serving.backends.tfserving.resilience import (
    MAX_BACKOFF_SECONDS,
    MIN_ATTEMPT_SECONDS,
    BreakerState,
    CircuitBreaker,
    Deadline,
    RetryableUnavailable,
    backoff_seconds,
    call_resilient,
)
from serving.errors import BackendTimeout, BackendUnavailable, ModelNotFound


class Clock:
    """A monotonic clock that moves only when told to, or when the code under test sleeps
    on it (see `sleep_on`). Times are binary fractions, so sums of them are exact."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def sleep_on(clock: Clock, monkeypatch) -> None:
    """The backoff sleeps of call_resilient pass on `clock` instead of the real one."""
    monkeypatch.setattr(resilience, "asyncio", types.SimpleNamespace(sleep=clock.sleep))


class LongestBackoff:
    """An rng whose jitter always picks the ceiling: backoffs of exactly base * 2**n."""

    def uniform(self, low: float, high: float) -> float:
        return high


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
    circuit.acquire()  # closed again: calls flow side by side, no probe slot
    circuit.acquire()


def test_cancelled_probe_frees_the_half_open_slot():
    clock = Clock()
    circuit = breaker(clock, threshold=1, reset=1.0)
    circuit.acquire()
    circuit.record_failure()
    clock.now += 1.0
    circuit.acquire()
    circuit.release()  # no verdict (the caller went away)
    assert circuit.state is BreakerState.HALF_OPEN
    circuit.acquire()  # another call may probe...
    with pytest.raises(BackendUnavailable) as raised:
        circuit.acquire()  # ...and holds the slot as the first one did
    assert raised.value.headers["Retry-After"] == "1"


def test_backoff_is_jittered_exponential_and_capped():
    rng = random.Random(0)
    samples = [[backoff_seconds(n, 0.05, rng) for _ in range(200)] for n in range(6)]
    for n, attempt_samples in enumerate(samples):
        ceiling = min(MAX_BACKOFF_SECONDS, 0.05 * 2**n)
        assert all(0 <= s <= ceiling for s in attempt_samples)
        assert max(attempt_samples) > 0.8 * ceiling  # spread over the whole range
        assert len(set(attempt_samples)) == len(attempt_samples)  # jittered, not fixed


async def test_retries_only_retryable_failures_and_stops_at_the_bound(monkeypatch):
    clock = Clock()
    sleep_on(clock, monkeypatch)
    circuit = breaker(clock, threshold=100)
    calls = []

    async def unreachable(seconds_left: float):
        calls.append(seconds_left)
        raise RetryableUnavailable(f"connection refused #{len(calls)}")

    with pytest.raises(RetryableUnavailable, match="#3"):
        await call_resilient(
            unreachable,
            breaker=circuit,
            deadline=Deadline(5.0, clock=clock),
            retries=2,
            backoff_base_seconds=0.0625,
            rng=LongestBackoff(),
        )
    assert calls == [5.0, 4.9375, 4.8125]  # the first try and two retries, then the bound
    assert clock.slept == [0.0625, 0.125]

    async def unknown_version(seconds_left: float):
        calls.append(seconds_left)
        raise ModelNotFound("no version 7")

    calls.clear()
    clock.slept.clear()
    with pytest.raises(ModelNotFound):
        await call_resilient(
            unknown_version,
            breaker=circuit,
            deadline=Deadline(5.0, clock=clock),
            retries=2,
            backoff_base_seconds=0.0625,
        )
    assert calls == [5.0]  # the server answered: no retry
    assert clock.slept == []


def test_deadline_counts_down_on_its_clock_and_stops_at_zero():
    clock = Clock()
    deadline = Deadline(0.25, clock=clock)
    assert deadline.remaining() == 0.25
    clock.now += 0.125
    assert deadline.remaining() == 0.125
    clock.now += 0.5  # past the deadline: nothing left, never a negative timeout
    assert deadline.remaining() == 0.0


async def test_retries_never_outlast_the_deadline(monkeypatch):
    clock = Clock()
    sleep_on(clock, monkeypatch)
    circuit = breaker(clock, threshold=2)
    calls = []

    async def unreachable(seconds_left: float):
        calls.append(seconds_left)
        raise RetryableUnavailable(f"connection refused #{len(calls)}")

    with pytest.raises(RetryableUnavailable, match="#5"):
        await call_resilient(
            unreachable,
            breaker=circuit,
            deadline=Deadline(1.0, clock=clock),
            retries=10,
            backoff_base_seconds=0.0625,
            rng=LongestBackoff(),
        )
    # Backoffs of 1/16, 1/8, 1/4, 1/2 s fit in the second; the next (1 s, the cap) would
    # leave no time for an attempt, so the fifth failure is the caller's answer, with
    # 6 of the 10 retries unused.
    assert clock.slept == [0.0625, 0.125, 0.25, 0.5]
    assert calls == [1.0, 0.9375, 0.8125, 0.5625, 0.0625]  # each attempt: what was left
    assert clock.now - 1000.0 == 0.9375
    # All those attempts are one failed call to the breaker, not five.
    assert circuit.state is BreakerState.CLOSED


async def test_no_time_left_fails_at_once_without_reaching_the_server():
    clock = Clock()
    circuit = breaker(clock, threshold=1)
    deadline = Deadline(MIN_ATTEMPT_SECONDS, clock=clock)
    clock.now += MIN_ATTEMPT_SECONDS / 2
    calls = []

    async def attempt(seconds_left: float):
        calls.append(seconds_left)

    with pytest.raises(BackendTimeout, match="no time left"):
        await call_resilient(
            attempt, breaker=circuit, deadline=deadline, retries=2, backoff_base_seconds=0.01
        )
    assert calls == []
    assert circuit.state is BreakerState.CLOSED  # not the server's fault


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
    circuit.acquire()  # the slot is free for the next probe, which holds it
    with pytest.raises(BackendUnavailable):
        circuit.acquire()
