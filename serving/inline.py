"""What runs on the event loop and what in a worker thread: one rule for every layer.

A step runs on the event loop when its estimated CPU time is within the inline budget
(GATEWAY_INLINE_BUDGET_MS), else in a worker thread. Handing work to a thread and back
costs a loaded worker more than a millisecond or two of work done where it is, but a
step longer than that holds up every other connection of the worker. The estimates
come from the per-unit costs below, measured with bench/hotpath.py and
bench/tfserving_codec.py (docs/benchmarks.md, "What runs on the event loop"); they
need to be right within a factor of two, not exactly.

Work done on the loop is not bounded by GATEWAY_BACKEND_TIMEOUT_SECONDS: the budget
keeps it short instead.
"""

from dataclasses import dataclass

# CPU per unit of work, in microseconds.
PREPROCESS_US_PER_IMAGE = 60.0  # decoding and preparing one upload, whatever its size
PREPROCESS_US_PER_PIXEL = 0.03  # ... and per pixel of it
MODEL_US_PER_ROW = 60.0  # one image of a small batch through the embedded model
JSON_US_PER_ROW = 400.0  # one image written as TF Serving's REST JSON (same in either format)


@dataclass(frozen=True)
class InlineBudget:
    """How much estimated CPU time a step may spend on the event loop (0: none)."""

    milliseconds: float

    def _fits(self, micros: float) -> bool:
        return micros <= self.milliseconds * 1000.0

    def preprocess(self, images: int, pixels: int) -> bool:
        """Decoding and preparing `images` uploads of `pixels` pixels in all."""
        return self._fits(images * PREPROCESS_US_PER_IMAGE + pixels * PREPROCESS_US_PER_PIXEL)

    def model_call(self, rows: int) -> bool:
        """One embedded model call of `rows` images."""
        return self._fits(rows * MODEL_US_PER_ROW)

    def json_encoding(self, rows: int) -> bool:
        """Writing `rows` images as a REST predict body."""
        return self._fits(rows * JSON_US_PER_ROW)


NEVER_INLINE = InlineBudget(0)
