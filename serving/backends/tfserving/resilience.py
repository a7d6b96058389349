"""Failure handling shared by the remote backends: a deadline, bounded retries, a breaker.

- One deadline per gateway call: every attempt and every backoff sleep fits inside it,
  so retrying never turns a 5 s timeout into 15 s.
- Retries only for `RetryableUnavailable`: failures where the server did not process the
  request (connection refused, connection reset before an answer, gRPC UNAVAILABLE).
  Predict is a pure function of its input, so even a repeat is harmless; a retry is
  still only worth it when the next attempt may reach a server (another replica, or
  the same one after a restart). Backoff is exponential with full jitter, so gateway
  workers that lost the server together do not come back in lockstep.
- A circuit breaker per backend instance: after `failure_threshold` consecutive
  unavailable/timeout outcomes it opens and calls fail at once with 503 and a
  Retry-After of the time left; after `reset_seconds` one probe call is let through
  (half-open) and its outcome closes or re-opens the circuit. No restart is needed for
  the gateway to use a server that came back.
"""

import asyncio
import enum
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from serving.errors import BackendTimeout, BackendUnavailable

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Below this, a further attempt cannot do useful work inside the deadline.
MIN_ATTEMPT_SECONDS = 0.01
MAX_BACKOFF_SECONDS = 1.0


class RetryableUnavailable(BackendUnavailable):
    """The server was not reached or did not process the request: safe to try again."""


class Deadline:
    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.seconds = seconds
        self.expires_at = clock() + seconds

    def remaining(self) -> float:
        return max(0.0, self.expires_at - self._clock())


def backoff_seconds(attempt: int, base: float, rng: random.Random | None = None) -> float:
    """Full jitter: uniform in [0, base * 2**attempt], capped (AWS architecture blog)."""
    ceiling = min(MAX_BACKOFF_SECONDS, base * (2**attempt))
    return (rng or random).uniform(0.0, ceiling)


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Closed -> open after N consecutive failures -> half-open after a pause -> closed.

    Single event loop, no awaits inside: the state changes need no lock.
    """

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int,
        reset_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._consecutive_failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self._reset_due():
            return BreakerState.HALF_OPEN
        return self._state

    def _reset_due(self) -> bool:
        return self._clock() - self._opened_at >= self.reset_seconds

    def retry_after_seconds(self) -> int:
        if self._state is not BreakerState.OPEN:
            return 1
        left = self.reset_seconds - (self._clock() - self._opened_at)
        return max(1, math.ceil(left))

    def acquire(self) -> None:
        """Let a call through, or raise BackendUnavailable without calling the server."""
        if self._state is BreakerState.CLOSED:
            return
        if self._state is BreakerState.OPEN:
            if not self._reset_due():
                raise BackendUnavailable(
                    f"{self.name} is unavailable (circuit open after repeated failures)",
                    retry_after_seconds=self.retry_after_seconds(),
                )
            self._transition(BreakerState.HALF_OPEN)
        if self._probe_in_flight:
            raise BackendUnavailable(
                f"{self.name} is unavailable (circuit half-open, a probe is in flight)",
                retry_after_seconds=1,
            )
        self._probe_in_flight = True

    def release(self) -> None:
        """The call ended without a verdict (cancelled): let another call probe."""
        self._probe_in_flight = False

    def record_success(self) -> None:
        self._probe_in_flight = False
        self._consecutive_failures = 0
        if self._state is not BreakerState.CLOSED:
            self._transition(BreakerState.CLOSED)

    def record_failure(self) -> None:
        self._probe_in_flight = False
        self._consecutive_failures += 1
        if self._state is BreakerState.HALF_OPEN or (
            self._state is BreakerState.CLOSED
            and self._consecutive_failures >= self.failure_threshold
        ):
            self._opened_at = self._clock()
            self._transition(BreakerState.OPEN)

    def _transition(self, state: BreakerState) -> None:
        log = logger.info if state is not BreakerState.OPEN else logger.warning
        log(
            "circuit %s: %s -> %s (%d consecutive failures)",
            self.name,
            self._state.value,
            state.value,
            self._consecutive_failures,
        )
        self._state = state


async def call_resilient(
    attempt: Callable[[float], Awaitable[T]],
    *,
    breaker: CircuitBreaker,
    deadline: Deadline,
    retries: int,
    backoff_base_seconds: float,
    rng: random.Random | None = None,
) -> T:
    """Run `attempt(seconds_left)` under the breaker, retrying RetryableUnavailable.

    One `deadline` may span several calls (resolving a version, then predicting).

    `attempt` raises serving.errors exceptions only. BackendUnavailable and
    BackendTimeout count against the breaker; any other outcome (an answer, or an
    error the server itself returned, like an unknown version) proves it is alive.
    """
    if deadline.remaining() < MIN_ATTEMPT_SECONDS:
        raise BackendTimeout(f"{breaker.name}: no time left for the call")
    breaker.acquire()
    verdict_recorded = False
    try:
        for attempt_number in range(retries + 1):
            try:
                result = await attempt(deadline.remaining())
            except RetryableUnavailable as error:
                last_error = error
                if attempt_number == retries:
                    break
                pause = backoff_seconds(attempt_number, backoff_base_seconds, rng)
                if deadline.remaining() - pause < MIN_ATTEMPT_SECONDS:
                    break
                logger.info(
                    "%s: retry %d/%d in %.0f ms: %s",
                    breaker.name,
                    attempt_number + 1,
                    retries,
                    pause * 1000,
                    error.message,
                )
                await asyncio.sleep(pause)
                continue
            except (BackendUnavailable, BackendTimeout):
                breaker.record_failure()
                verdict_recorded = True
                raise
            except Exception:
                breaker.record_success()
                verdict_recorded = True
                raise
            breaker.record_success()
            verdict_recorded = True
            return result
        breaker.record_failure()
        verdict_recorded = True
        raise last_error
    finally:
        if not verdict_recorded:
            breaker.release()
