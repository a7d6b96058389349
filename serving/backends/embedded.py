"""The embedded backend: SavedModel versions loaded in-process with TensorFlow.

Serves the newest numeric version directory under the model base path (TF Serving's
"latest" policy) and keeps the few newest loaded, so `version=N` works for them. A poll
task notices new (or removed) version directories; a new version is loaded and warmed
up completely before the served reference is swapped, so requests in flight finish on
the old model and readiness never drops. The model is called through its
`serving_default` SignatureDef, run by a TensorFlow session as TF Serving runs it: the
eager call of the same signature costs 2-3x the CPU at batch 1 (docs/benchmarks.md).
Both outputs, probabilities and digit_score, come from one session callable; a version
exported before digit_score existed is served with probabilities alone (logged at load).
Calls run in a worker thread, so the event
loop keeps serving while TensorFlow computes, except the batcher's small batches, which
cost less computed on the loop than handed over (serving/inline.py).
"""

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from google.protobuf import json_format

from contract import (
    DIGIT_SCORE_KEY,
    INPUT_KEY,
    INPUT_SHAPE,
    METADATA_FILENAME,
    OUTPUT_KEY,
    SIGNATURE_NAME,
)
from contract.checks import serves_digit_score, signature_problems
from serving.backends.base import (
    DEFAULT_MODEL,
    Backend,
    BatchPrediction,
    ModelInfo,
    ModelSelector,
    VersionDetails,
    contract_checked,
    without_digit_score_note,
)
from serving.errors import BackendError, BackendTimeout, BackendUnavailable, ModelNotFound
from serving.heap import freeze_long_lived_objects
from serving.inline import NEVER_INLINE, InlineBudget

logger = logging.getLogger(__name__)

# TensorFlow runs ops on its own thread pools; a few concurrent calls keep it busy.
MODEL_CALL_THREADS = 4


def set_intra_op_threads(threads: int) -> None:
    """TensorFlow's threads per op (0 leaves its default); effective only before the
    process's first TensorFlow op, as when a worker starts."""
    if threads <= 0:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow already ran in this process (tests, notebooks)
        current = tf.config.threading.get_intra_op_parallelism_threads()
        if current != threads:
            logger.info("TensorFlow already initialised: %s threads per op stay", current)


@dataclass(frozen=True)
class LoadedVersion:
    version: int
    path: Path
    # The signature, one session callable: images in; probabilities out, or
    # [probabilities, digit_score] when the version serves digit_score.
    run: Callable[[np.ndarray], Any]
    session: Any  # the TensorFlow session `run` belongs to
    serves_digit_score: bool = True
    calibration: Mapping[str, Any] | None = None  # metadata.json's "calibration"

    def __call__(self, images: np.ndarray) -> BatchPrediction:
        outputs = self.run(np.asarray(images, dtype=np.float32))
        if self.serves_digit_score:
            return BatchPrediction(outputs[0], str(self.version), outputs[1])
        return BatchPrediction(outputs, str(self.version))

    @property
    def details(self) -> VersionDetails:
        return VersionDetails(self.serves_digit_score, self.calibration)


def version_directories(base_path: Path) -> dict[int, Path]:
    """Numeric version directories; hidden staging directories (".3-partial-x") are skipped."""
    try:
        entries = list(base_path.iterdir())
    except OSError:
        return {}
    return {int(p.name): p for p in entries if p.name.isdigit() and p.is_dir()}


def load_version(version: int, path: Path, *, intra_op_threads: int = 0) -> LoadedVersion:
    """Load, check against the model contract and warm up one version (blocking)."""
    import tensorflow as tf

    v1 = tf.compat.v1
    config = v1.ConfigProto(
        intra_op_parallelism_threads=max(intra_op_threads, 0),
        # Negative: every op runs in the calling thread (config.proto). The graph is a
        # chain, so an inter-op pool overlaps nothing and only hands ops between threads
        # (docs/benchmarks.md).
        inter_op_parallelism_threads=-1,
    )
    session = v1.Session(graph=tf.Graph(), config=config)
    try:
        meta_graph = v1.saved_model.loader.load(session, [tf.saved_model.SERVING], str(path))
        signatures = {
            name: json_format.MessageToDict(signature, preserving_proto_field_name=True)
            for name, signature in meta_graph.signature_def.items()
        }
        problems = signature_problems({"signature_def": signatures})
        if problems:
            raise ValueError(f"{path} breaks the model contract: {'; '.join(problems)}")
        with_digit_score = serves_digit_score({"signature_def": signatures})
        signature = meta_graph.signature_def[SIGNATURE_NAME]
        probabilities = signature.outputs[OUTPUT_KEY].name
        # One callable, one session run, for both outputs.
        fetches = (
            [probabilities, signature.outputs[DIGIT_SCORE_KEY].name]
            if with_digit_score
            else probabilities
        )
        run = session.make_callable(fetches, feed_list=[signature.inputs[INPUT_KEY].name])
        model = LoadedVersion(
            version=version,
            path=path,
            run=run,
            session=session,
            serves_digit_score=with_digit_score,
            calibration=read_calibration(path),
        )
        # Warm-up: the first calls allocate and pick kernels; users should not pay for that.
        for batch_size in (1, 8):
            try:
                contract_checked(
                    model(np.zeros((batch_size, *INPUT_SHAPE), dtype=np.float32)),
                    batch_size,
                    f"model version {version}",
                )
            except BackendError as error:
                raise ValueError(f"{path}: {error.message}") from None
    except BaseException:
        session.close()
        raise
    if not with_digit_score:
        logger.warning(without_digit_score_note(version))
    return model


def read_calibration(path: Path) -> Mapping[str, Any] | None:
    """The "calibration" of a version's metadata.json as the trainer wrote it; None when
    the file or the key is missing or unreadable (the version is served all the same)."""
    try:
        metadata = json.loads((path / METADATA_FILENAME).read_text())
    except (OSError, ValueError):
        return None
    calibration = metadata.get("calibration") if isinstance(metadata, dict) else None
    return calibration if isinstance(calibration, dict) else None


class EmbeddedBackend(Backend):
    kind = "embedded"

    def __init__(
        self,
        *,
        model_name: str,
        base_path: Path,
        poll_seconds: float,
        keep_versions: int,
        timeout_seconds: float,
        intra_op_threads: int = 0,
        inline: InlineBudget = NEVER_INLINE,
    ) -> None:
        self._intra_op_threads = intra_op_threads
        self._inline = inline
        self._model_name = model_name
        self._base_path = base_path
        self._poll_seconds = poll_seconds
        self._keep_versions = keep_versions
        self._timeout_seconds = timeout_seconds
        # Replaced as a whole, never mutated: a request reads one consistent snapshot.
        self._loaded: dict[int, LoadedVersion] = {}
        self._failed: set[tuple[int, float]] = set()  # (version, mtime) that failed to load
        self._limiter = anyio.CapacityLimiter(MODEL_CALL_THREADS)
        self._poll_task: asyncio.Task[None] | None = None
        self._refresh_lock = asyncio.Lock()

    async def start(self) -> None:
        set_intra_op_threads(self._intra_op_threads)
        await self.refresh()
        if not self._loaded:
            logger.warning(
                "no model version under %s yet; not ready until one appears", self._base_path
            )
        self._poll_task = asyncio.create_task(self._poll(), name="embedded-model-poll")

    async def close(self) -> None:
        if self._poll_task is not None:
            self._poll_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poll_task
        self._loaded = {}

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_seconds)
            try:
                await self.refresh()
            except Exception:
                logger.exception("model poll failed; keeping the versions already loaded")

    async def refresh(self) -> None:
        """Load the newest versions on disk, then drop those no longer wanted."""
        async with self._refresh_lock:
            on_disk = version_directories(self._base_path)
            wanted = sorted(on_disk, reverse=True)[: self._keep_versions]
            loaded = dict(self._loaded)
            for version in wanted:
                if version in loaded:
                    continue
                path = on_disk[version]
                attempt = (version, _mtime(path))
                if attempt in self._failed:
                    continue
                try:
                    loaded[version] = await anyio.to_thread.run_sync(
                        functools.partial(
                            load_version, version, path, intra_op_threads=self._intra_op_threads
                        )
                    )
                except Exception as error:
                    self._failed.add(attempt)
                    logger.error("cannot load model version %s from %s: %s", version, path, error)
                    continue
                logger.info("loaded model version %s from %s", version, path)
            # A version removed from disk is unloaded (a rollback); one that failed to
            # load never replaces a working one.
            keep = {v: m for v, m in loaded.items() if v in on_disk}
            keep = dict(sorted(keep.items(), reverse=True)[: self._keep_versions])
            if not keep:
                # Nothing on disk can be served (the directory vanished, or only broken
                # versions remain): answering with what is loaded beats going unready.
                keep = loaded
            before = self.serving_version
            for version in sorted(set(self._loaded) - set(keep)):
                logger.info("unloading model version %s", version)
            if set(keep) - set(self._loaded):
                freeze_long_lived_objects()
            self._loaded = keep
            if self.serving_version != before:
                logger.info("serving model version %s (was %s)", self.serving_version, before)

    @property
    def serving_version(self) -> int | None:
        loaded = self._loaded
        return max(loaded) if loaded else None

    async def ready(self) -> bool:
        return bool(self._loaded)

    async def model_info(self) -> ModelInfo:
        loaded = self._loaded
        if not loaded:
            raise BackendUnavailable(f"no model version loaded from {self._base_path} yet")
        return ModelInfo(
            name=self._model_name,
            version=str(max(loaded)),
            available_versions=tuple(str(v) for v in sorted(loaded, reverse=True)),
            version_details={str(v): m.details for v, m in sorted(loaded.items(), reverse=True)},
        )

    async def predict(
        self, images: np.ndarray, selector: ModelSelector = DEFAULT_MODEL
    ) -> BatchPrediction:
        if selector.label is not None:
            raise ModelNotFound(
                "the embedded backend has no version labels; ask for version=N instead"
            )
        model = self._pick(selector.version)
        if self._inline.model_call(len(images)):
            return self._checked(model, model(images), len(images))
        try:
            with anyio.fail_after(self._timeout_seconds):
                # On timeout the thread finishes in the background; the client is answered.
                answer = await anyio.to_thread.run_sync(
                    model, images, limiter=self._limiter, abandon_on_cancel=True
                )
        except TimeoutError:
            raise BackendTimeout(
                f"the model did not answer within {self._timeout_seconds:g} s"
            ) from None
        return self._checked(model, answer, len(images))

    @staticmethod
    def _checked(model: LoadedVersion, answer: BatchPrediction, batch_size: int):
        return contract_checked(answer, batch_size, f"model version {model.version}")

    def _pick(self, version: int | None) -> LoadedVersion:
        loaded = self._loaded
        if not loaded:
            raise BackendUnavailable(f"no model version loaded from {self._base_path} yet")
        if version is None:
            return loaded[max(loaded)]
        if version not in loaded:
            available = ", ".join(str(v) for v in sorted(loaded))
            raise ModelNotFound(f"model version {version} is not loaded (available: {available})")
        return loaded[version]


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
