"""The embedded backend against real SavedModel directories: newest version, hot swap,
rollback, broken versions, no model yet, timeouts, digit scores (and versions without)."""

import asyncio
import gc
import json
import logging
import shutil

import numpy as np
import pytest

from contract import (
    DIGIT_SCORE_KEY,
    INPUT_KEY,
    INPUT_SHAPE,
    METADATA_FILENAME,
    OUTPUT_KEY,
    SIGNATURE_NAME,
)
from serving.backends.base import ModelSelector, VersionDetails
from serving.backends.embedded import EmbeddedBackend
from serving.errors import BackendTimeout, BackendUnavailable, ModelNotFound
from serving.inline import InlineBudget
from tests.utils.gateway_setup import publish_version
from tests.utils.models import export_legacy_model


def make_backend(model_base, **overrides) -> EmbeddedBackend:
    options = {
        "model_name": "mnist",
        "base_path": model_base / "mnist",
        "poll_seconds": 3600.0,  # tests call refresh() themselves: no timing involved
        "keep_versions": 2,
        "timeout_seconds": 10.0,
    }
    return EmbeddedBackend(**(options | overrides))


@pytest.fixture
def digits(mnist_sample) -> np.ndarray:
    return (mnist_sample["x_test"][:8, ..., None] / 255.0).astype(np.float32)


async def test_serves_the_newest_version_and_keeps_the_previous_one(model_base_copy, digits):
    publish_version(model_base_copy, 1, 3)
    backend = make_backend(model_base_copy)
    await backend.start()
    try:
        info = await backend.model_info()
        assert (info.version, info.available_versions) == ("3", ("3", "1"))
        assert (await backend.predict(digits)).model_version == "3"
        old = await backend.predict(digits, ModelSelector(version=1))
        assert old.model_version == "1"
        assert old.probabilities.shape == (8, 10)
        np.testing.assert_allclose(old.probabilities.sum(axis=1), 1.0, atol=1e-5)
    finally:
        await backend.close()


async def test_a_new_version_is_loaded_before_it_replaces_the_old_one(model_base_copy, digits):
    backend = make_backend(model_base_copy)
    await backend.start()
    try:
        publish_version(model_base_copy, 1, 2)
        refresh = asyncio.create_task(backend.refresh())
        readiness = []
        while not refresh.done():
            readiness.append(await backend.ready())
            answered = await backend.predict(digits)
            assert answered.model_version in {"1", "2"}
            await asyncio.sleep(0)
        await refresh
        assert readiness, "the refresh finished before any request ran"
        assert all(readiness)
        assert (await backend.predict(digits)).model_version == "2"
    finally:
        await backend.close()


async def test_without_a_model_it_is_not_ready_until_one_appears(tmp_path, tiny_model_base, digits):
    backend = make_backend(tmp_path)
    await backend.start()
    try:
        assert not await backend.ready()
        with pytest.raises(BackendUnavailable) as unavailable:
            await backend.predict(digits)
        assert unavailable.value.headers["Retry-After"]
        with pytest.raises(BackendUnavailable):
            await backend.model_info()

        shutil.copytree(tiny_model_base / "mnist" / "1", tmp_path / "mnist" / "5")
        await backend.refresh()
        assert await backend.ready()
        assert (await backend.predict(digits)).model_version == "5"
    finally:
        await backend.close()


async def test_a_removed_version_is_unloaded_and_the_next_newest_served(model_base_copy, digits):
    publish_version(model_base_copy, 1, 2)
    backend = make_backend(model_base_copy)
    await backend.start()
    try:
        shutil.rmtree(model_base_copy / "mnist" / "2")
        await backend.refresh()
        assert (await backend.predict(digits)).model_version == "1"
        with pytest.raises(ModelNotFound):
            await backend.predict(digits, ModelSelector(version=2))
    finally:
        await backend.close()


async def test_a_loaded_model_is_kept_out_of_full_garbage_collections(model_base_copy, digits):
    # A full collection walking TensorFlow's objects stalls every request (~150 ms): what
    # a load leaves alive is frozen, at start and for each version loaded later.
    gc.unfreeze()
    backend = make_backend(model_base_copy)
    try:
        await backend.start()
        after_start = gc.get_freeze_count()
        assert after_start > 1_000
        publish_version(model_base_copy, 1, 2)
        await backend.refresh()
        assert gc.get_freeze_count() > after_start
        assert (await backend.predict(digits)).model_version == "2"
    finally:
        await backend.close()
        gc.unfreeze()


async def test_a_broken_version_never_replaces_a_working_one(model_base_copy, digits, caplog):
    broken = model_base_copy / "mnist" / "7"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a protobuf")
    backend = make_backend(model_base_copy)
    await backend.start()
    try:
        assert (await backend.predict(digits)).model_version == "1"
        assert "cannot load model version 7" in caplog.text
        caplog.clear()
        await backend.refresh()
        assert "cannot load model version 7" not in caplog.text  # not retried every poll
    finally:
        await backend.close()


async def test_staging_directories_of_an_export_in_progress_are_ignored(model_base_copy, digits):
    shutil.copytree(model_base_copy / "mnist" / "1", model_base_copy / "mnist" / ".2-partial-x")
    backend = make_backend(model_base_copy)
    await backend.start()
    try:
        assert (await backend.model_info()).available_versions == ("1",)
    finally:
        await backend.close()


async def test_with_keep_versions_one_an_old_version_is_not_found(model_base_copy, digits):
    publish_version(model_base_copy, 1, 2)
    backend = make_backend(model_base_copy, keep_versions=1)
    await backend.start()
    try:
        with pytest.raises(ModelNotFound, match="available: 2"):
            await backend.predict(digits, ModelSelector(version=1))
    finally:
        await backend.close()


async def test_labels_are_refused_as_not_found(model_base_copy, digits):
    backend = make_backend(model_base_copy)
    await backend.start()
    try:
        with pytest.raises(ModelNotFound, match="label"):
            await backend.predict(digits, ModelSelector(label="stable"))
    finally:
        await backend.close()


async def test_a_model_call_over_the_timeout_answers_backend_timeout(model_base_copy):
    backend = make_backend(model_base_copy, timeout_seconds=1e-6)
    await backend.start()
    try:
        big_batch = np.zeros((4096, *INPUT_SHAPE), dtype=np.float32)
        with pytest.raises(BackendTimeout):
            await backend.predict(big_batch)
    finally:
        await backend.close()


async def _loop_turns_while(call) -> int:
    """How many times the event loop got a turn while `call` ran."""
    task = asyncio.create_task(call)
    turns = 0
    while not task.done():
        turns += 1
        await asyncio.sleep(0)
    await task
    return turns


async def test_the_event_loop_keeps_running_while_the_model_computes(model_base_copy):
    backend = make_backend(model_base_copy)
    await backend.start()
    try:
        turns = await _loop_turns_while(backend.predict(np.zeros((4096, *INPUT_SHAPE), np.float32)))
        assert turns > 10  # a blocking call would have left the loop no turn at all
    finally:
        await backend.close()


async def test_concurrent_calls_each_get_their_own_rows(model_base_copy, digits):
    backend = make_backend(model_base_copy)
    await backend.start()
    try:
        alone = [(await backend.predict(digits[i : i + 1])).probabilities for i in range(8)]
        together = await asyncio.gather(*(backend.predict(digits[i : i + 1]) for i in range(8)))
        for expected, answer in zip(alone, together, strict=True):
            np.testing.assert_allclose(answer.probabilities, expected, atol=1e-5)
    finally:
        await backend.close()


async def test_it_keeps_serving_when_the_only_version_is_replaced_by_a_broken_one(
    model_base_copy, digits
):
    backend = make_backend(model_base_copy)
    await backend.start()
    try:
        shutil.rmtree(model_base_copy / "mnist" / "1")
        broken = model_base_copy / "mnist" / "2"
        broken.mkdir()
        (broken / "saved_model.pb").write_bytes(b"garbage")
        await backend.refresh()
        assert await backend.ready()
        assert (await backend.predict(digits)).model_version == "1"
    finally:
        await backend.close()


def savedmodel_outputs(version_dir, images) -> dict[str, np.ndarray]:
    """What the version's serving signature computes, called with TensorFlow directly."""
    import tensorflow as tf

    signature = tf.saved_model.load(str(version_dir)).signatures[SIGNATURE_NAME]
    outputs = signature(**{INPUT_KEY: tf.constant(images)})
    return {key: value.numpy() for key, value in outputs.items()}


async def test_answers_what_the_exported_signature_computes(model_base_copy, digits):
    expected = savedmodel_outputs(model_base_copy / "mnist" / "1", digits)
    backend = make_backend(model_base_copy)
    await backend.start()
    try:
        answer = await backend.predict(digits)
        np.testing.assert_allclose(answer.probabilities, expected[OUTPUT_KEY], rtol=1e-5, atol=1e-6)
        assert answer.digit_scores is not None
        assert answer.digit_scores.dtype == np.float32
        np.testing.assert_allclose(
            answer.digit_scores, expected[DIGIT_SCORE_KEY], rtol=1e-5, atol=1e-6
        )
        info = await backend.model_info()
        assert info.version_details == {"1": VersionDetails(serves_digit_score=True)}
    finally:
        await backend.close()


async def test_a_version_exported_before_digit_score_is_served_and_logged(
    model_base_copy, digits, caplog
):
    legacy = export_legacy_model(model_base_copy, 2)
    expected = savedmodel_outputs(legacy, digits)
    backend = make_backend(model_base_copy)
    with caplog.at_level(logging.INFO, logger="serving.backends.embedded"):
        await backend.start()
    try:
        notes = [r.getMessage() for r in caplog.records if "digit_score" in r.getMessage()]
        assert notes == [
            "model version 2 has no 'digit_score' output (exported before it existed): "
            "every image it answers will count as a digit"
        ]
        answer = await backend.predict(digits)
        assert (answer.model_version, answer.digit_scores) == ("2", None)
        np.testing.assert_allclose(answer.probabilities, expected[OUTPUT_KEY], rtol=1e-5, atol=1e-6)
        # The version beside it still answers its digit scores.
        newer = await backend.predict(digits, ModelSelector(version=1))
        assert newer.digit_scores is not None
        assert newer.digit_scores.shape == (8,)
        info = await backend.model_info()
        assert info.version_details == {
            "2": VersionDetails(serves_digit_score=False),
            "1": VersionDetails(serves_digit_score=True),
        }
    finally:
        await backend.close()


async def test_model_info_gives_each_version_the_calibration_of_its_metadata(model_base_copy):
    calibration = {
        "temperature": 1.234567,
        "ece_test_before": 0.021,
        "ece_test_after": 0.004,
        "false_rejection_rate": 0.003,
        "rejection_rate": 0.991,
    }
    calibrated = publish_version(model_base_copy, 1, 2)
    metadata = json.loads((calibrated / METADATA_FILENAME).read_text())
    (calibrated / METADATA_FILENAME).write_text(json.dumps(metadata | {"calibration": calibration}))
    (publish_version(model_base_copy, 1, 3) / METADATA_FILENAME).write_text("{not json")
    backend = make_backend(model_base_copy, keep_versions=3)
    await backend.start()
    try:
        details = (await backend.model_info()).version_details
    finally:
        await backend.close()

    assert details == {
        "3": VersionDetails(serves_digit_score=True, calibration=None),  # unreadable: served
        "2": VersionDetails(serves_digit_score=True, calibration=calibration),
        "1": VersionDetails(serves_digit_score=True, calibration=None),  # no calibration key
    }


def _export_bad_digit_score(path) -> None:
    """A version whose digit_score fits the signature's shape but is no probability."""
    import tensorflow as tf

    class Overconfident(tf.Module):
        @tf.function(
            input_signature=[tf.TensorSpec([None, *INPUT_SHAPE], tf.float32, name=INPUT_KEY)]
        )
        def serve(self, image):
            flat = tf.reshape(image, [-1, 784])
            return {OUTPUT_KEY: tf.nn.softmax(flat[:, :10]), DIGIT_SCORE_KEY: flat[:, 0] + 2.0}

    module = Overconfident()
    tf.saved_model.save(module, str(path), signatures={SIGNATURE_NAME: module.serve})


async def test_a_version_whose_digit_score_is_no_probability_is_not_served(
    model_base_copy, digits, caplog
):
    _export_bad_digit_score(model_base_copy / "mnist" / "4")
    backend = make_backend(model_base_copy)
    await backend.start()
    try:
        assert "cannot load model version 4" in caplog.text
        assert "a digit_score is not a probability in [0, 1]" in caplog.text
        assert (await backend.predict(digits)).model_version == "1"
    finally:
        await backend.close()


def _export_module(path, input_name: str) -> None:
    import tensorflow as tf

    class FirstTenPixels(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, *INPUT_SHAPE], tf.float32)])
        def serve(self, images):
            return {OUTPUT_KEY: tf.reshape(images, [-1, 784])[:, :10]}

    module = FirstTenPixels()
    serve = module.serve.get_concrete_function()
    wrapped = tf.function(lambda **inputs: serve(inputs[input_name]))
    signature = wrapped.get_concrete_function(
        **{input_name: tf.TensorSpec([None, *INPUT_SHAPE], tf.float32)}
    )
    tf.saved_model.save(module, str(path), signatures={SIGNATURE_NAME: signature})


async def test_a_version_whose_signature_breaks_the_contract_is_not_served(
    model_base_copy, digits, caplog
):
    _export_module(model_base_copy / "mnist" / "5", input_name="pixels")
    backend = make_backend(model_base_copy)
    await backend.start()
    try:
        assert "inputs has no 'image' (it has ['pixels'])" in caplog.text
        assert (await backend.predict(digits)).model_version == "1"
    finally:
        await backend.close()


async def test_small_batches_are_computed_on_the_loop_and_large_ones_in_a_thread(
    model_base_copy, digits
):
    inline = make_backend(model_base_copy, inline=InlineBudget(1.0))
    threaded = make_backend(model_base_copy)
    await inline.start()
    await threaded.start()
    try:
        # Inline, the call finishes in the task's first step: the loop gets no turn.
        assert await _loop_turns_while(inline.predict(digits)) == 1
        large = np.zeros((4096, *INPUT_SHAPE), np.float32)
        assert await _loop_turns_while(inline.predict(large)) > 10
        np.testing.assert_allclose(
            (await inline.predict(digits)).probabilities,
            (await threaded.predict(digits)).probabilities,
            rtol=1e-6,
        )
    finally:
        await inline.close()
        await threaded.close()


@pytest.mark.parametrize(("batching", "inline"), [(True, True), (False, False)])
async def test_model_calls_run_on_the_loop_only_behind_the_batcher(
    model_base_copy, digits, batching, inline
):
    from serving.backends import create_backend
    from serving.backends.batching import BatchingBackend
    from serving.settings import Settings

    settings = Settings(
        model_base_path=model_base_copy / "mnist",
        batching_enabled=batching,
        model_poll_seconds=3600,
    )
    backend = create_backend(settings)
    embedded = backend.inner if isinstance(backend, BatchingBackend) else backend
    await embedded.start()
    try:
        turns = await _loop_turns_while(embedded.predict(digits[:1]))
        assert (turns == 1) is inline
    finally:
        await embedded.close()
