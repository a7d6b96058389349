"""Dynamic batching: concurrent predict calls become one model call.

`BatchingBackend` wraps any `Backend`. Callers asking for the same model (version, label)
are queued together and sent to the inner backend as one concatenated batch; each caller
gets exactly its own rows back (probabilities and digit scores alike).

When to send, measured rather than guessed (docs/benchmarks.md):
- nothing in flight for this model: send on the next event-loop turn, so a lone request
  waits no timer, yet requests that arrived in the same turn still share the call;
- a batch in flight: queue; the queue is sent the moment that batch returns, or after
  `max_wait_ms` if it is still out then (a slow remote backend gets a second call in
  flight instead of stalling everyone), or at once when it holds `max_batch_size` rows.
A request larger than `max_batch_size` rows on its own goes straight to the inner backend.

A failing inner call fails only the callers in that batch, each with its own copy of the
same exception. A caller cancelled while queued is dropped from the batch; one cancelled
while its batch runs just does not get its rows — the others still do.
"""

import asyncio
import copy
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from serving.backends.base import (
    DEFAULT_MODEL,
    Backend,
    BatchPrediction,
    ModelInfo,
    ModelSelector,
    contract_checked,
)
from serving.errors import BackendUnavailable

logger = logging.getLogger(__name__)


@dataclass
class _Pending:
    images: np.ndarray
    future: asyncio.Future


@dataclass
class _Queue:
    items: deque[_Pending] = field(default_factory=deque)
    rows: int = 0
    in_flight: int = 0
    flush_handle: asyncio.Handle | asyncio.TimerHandle | None = None


class BatchingBackend(Backend):
    def __init__(
        self,
        inner: Backend,
        *,
        max_batch_size: int,
        max_wait_ms: float,
        observe_batch: Callable[[int], None] | None = None,
    ) -> None:
        """`observe_batch` is told the number of images of every call to `inner`."""
        if max_batch_size < 1 or max_wait_ms < 0:
            raise ValueError("max_batch_size must be >= 1 and max_wait_ms >= 0")
        self.inner = inner
        self._observe_batch = observe_batch
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self._queues: dict[ModelSelector, _Queue] = {}
        self._batches: set[asyncio.Task] = set()
        self._closed = False

    @property
    def kind(self) -> str:  # type: ignore[override]
        return self.inner.kind

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        self._closed = True
        for queue in self._queues.values():
            if queue.flush_handle is not None:
                queue.flush_handle.cancel()
            while queue.items:
                pending = queue.items.popleft()
                if not pending.future.done():
                    pending.future.set_exception(BackendUnavailable("the gateway is shutting down"))
        if self._batches:
            await asyncio.gather(*self._batches, return_exceptions=True)
        await self.inner.close()

    async def ready(self) -> bool:
        return await self.inner.ready()

    async def model_info(self) -> ModelInfo:
        return await self.inner.model_info()

    async def predict(
        self,
        images: np.ndarray,
        selector: ModelSelector = DEFAULT_MODEL,
    ) -> BatchPrediction:
        if self._closed:
            raise BackendUnavailable("the gateway is shutting down")
        if len(images) >= self.max_batch_size:
            self._observe(len(images))
            return await self.inner.predict(images, selector)
        queue = self._queues.setdefault(selector, _Queue())
        loop = asyncio.get_running_loop()
        pending = _Pending(images, loop.create_future())
        queue.items.append(pending)
        queue.rows += len(images)
        self._schedule(selector, queue, loop)
        try:
            return await pending.future
        except asyncio.CancelledError:
            if pending in queue.items:  # still queued: take its rows out of the next batch
                queue.items.remove(pending)
                queue.rows -= len(pending.images)
            raise

    def _observe(self, images: int) -> None:
        if self._observe_batch is not None:
            self._observe_batch(images)

    def _schedule(self, key: ModelSelector, queue: _Queue, loop: asyncio.AbstractEventLoop) -> None:
        if queue.rows >= self.max_batch_size:
            self._cancel_flush(queue)
            self._flush(key, queue)
        elif queue.flush_handle is not None:
            return
        elif queue.in_flight == 0:
            queue.flush_handle = loop.call_soon(self._flush, key, queue)
        else:
            queue.flush_handle = loop.call_later(self.max_wait_s, self._flush, key, queue)

    @staticmethod
    def _cancel_flush(queue: _Queue) -> None:
        if queue.flush_handle is not None:
            queue.flush_handle.cancel()
            queue.flush_handle = None

    def _flush(self, key: ModelSelector, queue: _Queue) -> None:
        """Send queued requests, oldest first, in batches of at most max_batch_size rows."""
        queue.flush_handle = None
        while queue.items:
            batch: list[_Pending] = []
            rows = 0
            while queue.items and rows + len(queue.items[0].images) <= self.max_batch_size:
                pending = queue.items.popleft()
                rows += len(pending.images)
                batch.append(pending)
            queue.rows -= rows
            if not batch:  # unreachable: larger requests bypass the queue
                break
            queue.in_flight += 1
            task = asyncio.get_running_loop().create_task(self._run_batch(key, queue, batch))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)
            if queue.rows < self.max_batch_size:
                break
        if queue.items:
            self._schedule(key, queue, asyncio.get_running_loop())

    async def _run_batch(self, key: ModelSelector, queue: _Queue, batch: list[_Pending]) -> None:
        try:
            live = [p for p in batch if not p.future.done()]  # cancelled while queued
            if not live:
                return
            images = live[0].images if len(live) == 1 else np.concatenate([p.images for p in live])
            self._observe(len(images))
            try:
                result = contract_checked(
                    await self.inner.predict(images, key),
                    len(images),
                    f"the {self.inner.kind} backend",
                )
            except asyncio.CancelledError:
                for pending in live:
                    if not pending.future.done():
                        pending.future.set_exception(BackendUnavailable("the batch was cancelled"))
                raise
            except Exception as exc:
                for pending in live:
                    if not pending.future.done():
                        pending.future.set_exception(_copy_exception(exc))
                return
            start = 0
            for pending in live:
                stop = start + len(pending.images)
                if not pending.future.done():
                    pending.future.set_result(result.rows(start, stop))
                start = stop
        finally:
            queue.in_flight -= 1
            # Whoever queued while this batch ran has waited long enough.
            if queue.items and not self._closed:
                self._cancel_flush(queue)
                self._flush(key, queue)


def _copy_exception(exc: Exception) -> Exception:
    """Each caller raises its own instance: one shared exception would collect every
    caller's traceback."""
    try:
        clone = copy.copy(exc)
    except Exception:
        return exc
    clone.__cause__ = exc.__cause__
    return clone
