"""Dynamic batching against a real SavedModel: rows go back to the right callers.

The inner backend calls the tiny model's serving signature off the event loop, like the
embedded backend does, and records the batch sizes it was asked for; a gate lets a test
hold a batch in flight to queue others behind it.
"""

import asyncio

import numpy as np
import pytest

from contract import DIGIT_SCORE_KEY, INPUT_KEY, OUTPUT_KEY, SIGNATURE_NAME
from serving.backends.base import DEFAULT_MODEL, Backend, BatchPrediction, ModelInfo, ModelSelector
from serving.backends.batching import BatchingBackend
from serving.errors import BackendError, BackendUnavailable, ModelNotFound
from tests.utils.models import export_legacy_model


class SignatureBackend(Backend):
    """Serves version "1" (also label "stable") from a real SavedModel; records each call."""

    kind = "signature-under-test"

    def __init__(self, model_dir) -> None:
        import tensorflow as tf

        self._tf = tf
        self._signature = tf.saved_model.load(str(model_dir)).signatures[SIGNATURE_NAME]
        self.calls: list[tuple[int, ModelSelector]] = []
        self.gate: asyncio.Event | None = None
        self.fail_with: Exception | None = None
        self.called = asyncio.Event()

    async def ready(self) -> bool:
        return True

    async def model_info(self) -> ModelInfo:
        return ModelInfo(name="mnist", version="1", available_versions=("1",))

    def outputs(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """The signature's outputs, as TensorFlow computes them."""
        outputs = self._signature(**{INPUT_KEY: self._tf.constant(images)})
        return {key: value.numpy() for key, value in outputs.items()}

    def compute(self, images: np.ndarray) -> np.ndarray:
        return self.outputs(images)[OUTPUT_KEY]

    async def predict(self, images, selector=DEFAULT_MODEL) -> BatchPrediction:
        self.calls.append((len(images), selector))
        self.called.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        if selector.version not in (None, 1) or selector.label not in (None, "stable"):
            raise ModelNotFound(f"no model version={selector.version} label={selector.label}")
        outputs = await asyncio.to_thread(self.outputs, images)
        return BatchPrediction(outputs[OUTPUT_KEY], "1", outputs.get(DIGIT_SCORE_KEY))


@pytest.fixture(scope="module")
def signature_backend(tiny_model_base):
    return SignatureBackend(tiny_model_base / "mnist" / "1")


@pytest.fixture(scope="module")
def legacy_backend(tmp_path_factory):
    """The same, on a version exported before digit_score: probabilities only."""
    return SignatureBackend(export_legacy_model(tmp_path_factory.mktemp("legacy"), 1))


@pytest.fixture
def inner(signature_backend):
    signature_backend.calls.clear()
    signature_backend.gate = None
    signature_backend.fail_with = None
    signature_backend.called = asyncio.Event()
    return signature_backend


@pytest.fixture
def digits(mnist_sample) -> np.ndarray:
    return (mnist_sample["x_test"][:64, :, :, None] / 255.0).astype(np.float32)


async def test_concurrent_callers_each_get_exactly_their_own_rows(inner, digits):
    batcher = BatchingBackend(inner, max_batch_size=64, max_wait_ms=5)
    sizes = [1, 3, 1, 2, 5, 1, 4, 1]
    requests, start = [], 0
    for size in sizes:
        requests.append(digits[start : start + size])
        start += size

    answers = await asyncio.gather(*(batcher.predict(images) for images in requests))

    assert len(inner.calls) < len(requests), "concurrent requests were not combined"
    for images, answer in zip(requests, answers, strict=True):
        np.testing.assert_allclose(answer.probabilities, inner.compute(images), atol=1e-5)
        assert answer.model_version == "1"


async def test_concurrent_callers_each_get_exactly_their_own_digit_scores(inner, digits):
    batcher = BatchingBackend(inner, max_batch_size=64, max_wait_ms=5)
    requests = [digits[start : start + size] for start, size in ((0, 1), (1, 4), (5, 2), (7, 1))]

    answers = await asyncio.gather(*(batcher.predict(images) for images in requests))

    assert len(inner.calls) < len(requests), "concurrent requests were not combined"
    for images, answer in zip(requests, answers, strict=True):
        assert answer.digit_scores is not None
        assert answer.digit_scores.shape == (len(images),)
        expected = inner.outputs(images)[DIGIT_SCORE_KEY]  # the SavedModel's own output
        np.testing.assert_allclose(answer.digit_scores, expected, atol=1e-6)


async def test_a_version_without_digit_scores_gives_every_caller_none(legacy_backend, digits):
    batcher = BatchingBackend(legacy_backend, max_batch_size=64, max_wait_ms=5)
    requests = [digits[0:1], digits[1:4], digits[4:6]]

    answers = await asyncio.gather(*(batcher.predict(images) for images in requests))

    for images, answer in zip(requests, answers, strict=True):
        assert answer.digit_scores is None
        expected = legacy_backend.compute(images)
        np.testing.assert_allclose(answer.probabilities, expected, atol=1e-6)


async def test_a_lone_request_is_sent_without_waiting_for_the_max_wait(inner, digits):
    batcher = BatchingBackend(inner, max_batch_size=64, max_wait_ms=60_000)
    answer = await asyncio.wait_for(batcher.predict(digits[:1]), timeout=30)
    assert answer.probabilities.shape == (1, 10)
    assert inner.calls == [(1, DEFAULT_MODEL)]


async def test_batches_never_exceed_max_batch_size(inner, digits):
    batcher = BatchingBackend(inner, max_batch_size=8, max_wait_ms=5)
    requests = [digits[i * 3 : i * 3 + 3] for i in range(10)]  # 30 rows in requests of 3

    answers = await asyncio.gather(*(batcher.predict(images) for images in requests))

    assert all(size <= 8 for size, _ in inner.calls)
    assert sum(size for size, _ in inner.calls) == 30
    for images, answer in zip(requests, answers, strict=True):
        np.testing.assert_allclose(answer.probabilities, inner.compute(images), atol=1e-5)


async def test_requests_queued_behind_a_running_batch_are_combined(inner, digits):
    batcher = BatchingBackend(inner, max_batch_size=64, max_wait_ms=60_000)
    inner.gate = asyncio.Event()
    first = asyncio.create_task(batcher.predict(digits[:1]))
    await inner.called.wait()
    queued = [asyncio.create_task(batcher.predict(digits[i : i + 1])) for i in range(1, 6)]
    await asyncio.sleep(0)
    inner.gate.set()

    await asyncio.gather(first, *queued)

    assert [size for size, _ in inner.calls] == [1, 5]


async def test_a_request_larger_than_the_max_batch_goes_alone(inner, digits):
    batcher = BatchingBackend(inner, max_batch_size=4, max_wait_ms=5)
    answer = await batcher.predict(digits[:10])
    np.testing.assert_allclose(answer.probabilities, inner.compute(digits[:10]), atol=1e-5)
    assert inner.calls == [(10, DEFAULT_MODEL)]


async def test_a_failing_batch_fails_only_its_callers_with_the_same_error(inner, digits):
    batcher = BatchingBackend(inner, max_batch_size=64, max_wait_ms=5)
    good = [batcher.predict(digits[i : i + 1]) for i in range(3)]
    bad = [batcher.predict(digits[i : i + 1], ModelSelector(version=7)) for i in range(3)]

    results = await asyncio.gather(*good, *bad, return_exceptions=True)

    for result in results[:3]:
        assert isinstance(result, BatchPrediction)
    errors = results[3:]
    assert all(isinstance(error, ModelNotFound) for error in errors)
    assert all(error.status_code == 404 and "version=7" in error.message for error in errors)
    assert len({id(error) for error in errors}) == 3, "callers share one exception instance"


async def test_a_backend_error_keeps_its_status_and_retry_after(inner, digits):
    batcher = BatchingBackend(inner, max_batch_size=64, max_wait_ms=5)
    inner.fail_with = BackendUnavailable("model server down", retry_after_seconds=7)

    results = await asyncio.gather(
        *(batcher.predict(digits[i : i + 1]) for i in range(4)), return_exceptions=True
    )

    for error in results:
        assert isinstance(error, BackendUnavailable)
        assert error.status_code == 503
        assert error.headers == {"Retry-After": "7"}

    inner.fail_with = None
    answer = await batcher.predict(digits[:2])  # the next batch is unaffected
    np.testing.assert_allclose(answer.probabilities, inner.compute(digits[:2]), atol=1e-5)


class ShortAnswerBackend(Backend):
    """Answers one row fewer than it was sent: a model server that broke the contract."""

    kind = "short-answer"

    async def ready(self) -> bool:
        return True

    async def model_info(self) -> ModelInfo:
        return ModelInfo(name="mnist", version="1")

    async def predict(self, images, selector=DEFAULT_MODEL) -> BatchPrediction:
        return BatchPrediction(np.full((len(images) - 1, 10), 0.1, np.float32), "1")


async def test_an_answer_that_breaks_the_contract_fails_its_callers_with_502(digits):
    batcher = BatchingBackend(ShortAnswerBackend(), max_batch_size=64, max_wait_ms=5)
    errors = await asyncio.gather(
        *(batcher.predict(digits[i : i + 1]) for i in range(3)), return_exceptions=True
    )
    assert [type(error) for error in errors] == [BackendError] * 3
    assert {error.status_code for error in errors} == {502}
    assert {error.message for error in errors} == {
        "the short-answer backend's answer breaks the model contract: "
        "shape [2, 10] for 3 images, not [3, 10]"
    }


class BadDigitScoreBackend(Backend):
    """Good probabilities, but digit scores that break the contract."""

    kind = "bad-digit-score"

    def __init__(self, scores_for) -> None:
        self.scores_for = scores_for

    async def ready(self) -> bool:
        return True

    async def model_info(self) -> ModelInfo:
        return ModelInfo(name="mnist", version="1")

    async def predict(self, images, selector=DEFAULT_MODEL) -> BatchPrediction:
        probabilities = np.full((len(images), 10), 0.1, np.float32)
        return BatchPrediction(probabilities, "1", self.scores_for(len(images)))


BAD_DIGIT_SCORES = {
    "nan": (
        lambda n: np.full(n, np.nan, np.float32),
        "a digit_score is not a probability in [0, 1]",
    ),
    "a column": (
        lambda n: np.full((n, 1), 0.5, np.float32),
        "digit_score has shape [3, 1] for 3 images, not [3]",
    ),
    "one short": (
        lambda n: np.full(n - 1, 0.5, np.float32),
        "digit_score has shape [2] for 3 images, not [3]",
    ),
}


@pytest.mark.parametrize("bad", list(BAD_DIGIT_SCORES))
async def test_digit_scores_that_break_the_contract_fail_the_callers_with_502(bad, digits):
    scores_for, problem = BAD_DIGIT_SCORES[bad]
    batcher = BatchingBackend(BadDigitScoreBackend(scores_for), max_batch_size=64, max_wait_ms=5)
    errors = await asyncio.gather(
        *(batcher.predict(digits[i : i + 1]) for i in range(3)), return_exceptions=True
    )
    assert [type(error) for error in errors] == [BackendError] * 3
    assert {(error.status_code, error.code) for error in errors} == {(502, "backend_error")}
    assert {error.message for error in errors} == {
        f"the bad-digit-score backend's answer breaks the model contract: {problem}"
    }


async def test_versions_and_labels_are_batched_separately(inner, digits):
    batcher = BatchingBackend(inner, max_batch_size=64, max_wait_ms=5)
    calls = [
        batcher.predict(digits[0:1]),
        batcher.predict(digits[1:2], ModelSelector(version=1)),
        batcher.predict(digits[2:3]),
        batcher.predict(digits[3:4], ModelSelector(label="stable")),
        batcher.predict(digits[4:5], ModelSelector(version=1)),
    ]

    answers = await asyncio.gather(*calls)

    assert sorted(inner.calls, key=str) == sorted(
        [(2, DEFAULT_MODEL), (2, ModelSelector(version=1)), (1, ModelSelector(label="stable"))],
        key=str,
    )
    for index, answer in enumerate(answers):
        expected = inner.compute(digits[index : index + 1])
        np.testing.assert_allclose(answer.probabilities, expected, atol=1e-5)


async def test_a_caller_cancelled_in_the_queue_is_left_out_of_the_batch(inner, digits):
    batcher = BatchingBackend(inner, max_batch_size=64, max_wait_ms=60_000)
    inner.gate = asyncio.Event()
    first = asyncio.create_task(batcher.predict(digits[:1]))
    await inner.called.wait()
    doomed = asyncio.create_task(batcher.predict(digits[1:4]))
    survivor = asyncio.create_task(batcher.predict(digits[4:6]))
    await asyncio.sleep(0)
    doomed.cancel()
    inner.gate.set()

    answer = await survivor
    await first

    assert doomed.cancelled()
    np.testing.assert_allclose(answer.probabilities, inner.compute(digits[4:6]), atol=1e-5)
    assert [size for size, _ in inner.calls] == [1, 2]


async def test_a_caller_cancelled_mid_batch_does_not_break_the_others(inner, digits):
    batcher = BatchingBackend(inner, max_batch_size=64, max_wait_ms=5)
    inner.gate = asyncio.Event()
    tasks = [asyncio.create_task(batcher.predict(digits[i : i + 1])) for i in range(4)]
    await inner.called.wait()
    tasks[1].cancel()
    inner.gate.set()

    results = await asyncio.gather(*tasks, return_exceptions=True)

    assert inner.calls == [(4, DEFAULT_MODEL)]
    assert isinstance(results[1], asyncio.CancelledError)
    for index in (0, 2, 3):
        expected = inner.compute(digits[index : index + 1])
        np.testing.assert_allclose(results[index].probabilities, expected, atol=1e-5)
    # The batcher keeps serving afterwards.
    assert (await batcher.predict(digits[:1])).probabilities.shape == (1, 10)


async def test_close_fails_queued_callers_as_unavailable(inner, digits):
    batcher = BatchingBackend(inner, max_batch_size=64, max_wait_ms=60_000)
    inner.gate = asyncio.Event()
    first = asyncio.create_task(batcher.predict(digits[:1]))
    await inner.called.wait()
    queued = asyncio.create_task(batcher.predict(digits[1:2]))
    await asyncio.sleep(0)
    closing = asyncio.create_task(batcher.close())
    await asyncio.sleep(0)
    inner.gate.set()
    await closing

    assert (await first).probabilities.shape == (1, 10)
    with pytest.raises(BackendUnavailable):
        await queued
    with pytest.raises(BackendUnavailable):
        await batcher.predict(digits[:1])


async def test_create_backend_batches_the_embedded_backend_only_when_enabled(
    tiny_model_base, digits
):
    from serving.backends import create_backend
    from serving.settings import Settings

    base = tiny_model_base / "mnist"
    plain = create_backend(Settings(model_base_path=base, batching_enabled=False))
    batched = create_backend(Settings(model_base_path=base, batch_max_size=16))
    assert not isinstance(plain, BatchingBackend)
    assert isinstance(batched, BatchingBackend)
    assert batched.kind == "embedded"
    await plain.start()
    await batched.start()
    try:
        requests = [digits[i : i + 1 + i % 3] for i in range(0, 40, 4)]
        answers = await asyncio.gather(*(batched.predict(images) for images in requests))
        for images, answer in zip(requests, answers, strict=True):
            expected = await plain.predict(images)
            np.testing.assert_allclose(answer.probabilities, expected.probabilities, atol=1e-5)
            assert answer.model_version == expected.model_version == "1"
        with pytest.raises(ModelNotFound):
            await batched.predict(digits[:1], ModelSelector(version=9))
    finally:
        await batched.close()
        await plain.close()


async def test_the_size_of_every_call_to_the_model_is_reported(inner, digits):
    observed: list[int] = []
    batcher = BatchingBackend(inner, max_batch_size=8, max_wait_ms=5, observe_batch=observed.append)
    requests = [digits[i : i + 1] for i in range(5)] + [digits[10:20]]  # the last bypasses

    await asyncio.gather(*(batcher.predict(images) for images in requests))

    assert observed == [size for size, _ in inner.calls]
    assert sorted(observed)[-1] == 10
    assert sum(observed) == 15
