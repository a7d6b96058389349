"""POST /v1/predict: images in, one prediction per image out, in upload order.

The request path, each stage timed: read uploads -> decode + preprocess (per image) ->
one backend call for the whole batch -> postprocess into the response.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query, Request, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from serving.api.schemas import ModelRef, Prediction, PredictResponse, error_responses
from serving.api.uploads import PredictJSON, Upload, read_uploads
from serving.backends.base import LABEL_PATTERN, Backend, BatchPrediction, ModelSelector
from serving.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    BadImage,
    GatewayError,
    InvalidRequest,
    ModelNotFound,
    NoInk,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from serving.inline import InlineBudget
from serving.observability import GatewayMetrics
from serving.preprocessing import OpenedImage, decode, mnist_like, open_image
from serving.settings import Settings


class SolvedOnlyWithAQuery(APIRoute):
    """A route whose endpoint gets FastAPI's parameter solving only when the request has
    a query string: nearly every predict request has none, and for those FastAPI's
    per-request machinery costs more than the rest of the framework side together
    (docs/benchmarks.md). The declared parameters are still FastAPI's, documented and
    validated by it; the endpoint reads the body itself and returns the Response."""

    def get_route_handler(self):
        solving = super().get_route_handler()
        endpoint = self.endpoint

        async def handler(request: Request) -> Response:
            if request.scope["query_string"]:
                return await solving(request)
            return await endpoint(request)

        return handler


router = APIRouter(tags=["predict"], route_class=SolvedOnlyWithAQuery)

PROBABILITY_DECIMALS = 6

REQUEST_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "file": {
                        "type": "array",
                        "items": {"type": "string", "format": "binary"},
                        "description": "one or more images: PNG, JPEG, GIF, BMP, WebP, TIFF",
                    }
                },
                "required": ["file"],
            }
        },
        "application/json": {
            "schema": PredictJSON.model_json_schema(),
            "example": {
                "images": [
                    # a 28x28 PNG of an MNIST seven
                    (
                        "iVBORw0KGgoAAAANSUhEUgAAABwAAAAcCAAAAABXZoBIAAAAzUlEQVR42mNgGDaAkYGBgcFrPSsD"
                        "w/dNDA8nmr85gq4i4x8U/Pz352ihuzqKTtY4lUcMnH4MDJqiDAwMDD+665Ek4UDXlSHSmIHhk/xH"
                        "7I7gUJ79718TTjeq/PuoBGExYUr6M/CG4NKo9PnfB0FcOn25GWa/x6FR9fO/Lxo45EQ2/PtXiMvG"
                        "nn//7jDhkIv4+++zLg45+4///gXjkBP4/O/fZFbsckz5//6dxiHHYPXv3z9cYcP39t//Qyw4JIP+"
                        "/TskjcuL6s8OypCQwAAxfUkAnOKpwAAAAABJRU5ErkJggg=="
                    )
                ]
            },
        },
    },
}


ERRORS = (
    BadImage,
    ModelNotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
    InvalidRequest,
    NoInk,
    GatewayError,
    BackendError,
    BackendUnavailable,
    BackendTimeout,
)


@router.post(
    "/v1/predict",
    summary="Classify handwritten digits",
    description=(
        "Send images as multipart `file` parts (`curl -F file=@digit.png ...`) or as JSON "
        '`{"images": ["<base64>", ...]}`. Any size and position, dark-on-light or '
        "light-on-dark: each image is made MNIST-like before the model sees it. A uniform "
        "image (no ink) is refused with 422 `no_ink`. Each prediction says whether the "
        "image holds a digit at all (`is_digit`, from the model's calibrated "
        "`digit_score`): an image that is none still gets its likeliest digit, which a "
        "client should not present as the answer."
    ),
    # The body is read by serving.api.uploads (multipart or JSON), not declared as
    # File/Form parameters: its schema is documented here.
    openapi_extra={"requestBody": REQUEST_BODY},
    responses=error_responses(*ERRORS),
    response_model=PredictResponse,
)
async def predict(
    request: Request,
    version: Annotated[int | None, Query(gt=0, description="a model version to ask for")] = None,
    label: Annotated[
        str | None, Query(pattern=LABEL_PATTERN, description="a version label (TF Serving)")
    ] = None,
) -> Response:
    selector = ModelSelector(version, label)
    # Read from app.state directly, not through Depends (docs/benchmarks.md).
    state = request.app.state
    backend: Backend = state.backend
    settings: Settings = state.settings
    metrics: GatewayMetrics = state.metrics
    uploads = await read_uploads(
        request,
        max_bytes=settings.max_request_bytes,
        max_files=settings.max_files_per_request,
    )
    opened = []
    for index, upload in enumerate(uploads, start=1):
        with named(index, upload):
            opened.append(open_image(upload.data, max_pixels=settings.max_image_pixels))
    pixels = sum(image.pixels for image in opened)
    if InlineBudget(settings.inline_budget_ms).preprocess(len(opened), pixels):
        images = prepare_images(uploads, opened, metrics)
    else:
        images = await run_in_threadpool(prepare_images, uploads, opened, metrics)
    with metrics.time_stage("model"):
        result = await backend.predict(images, selector)
    response = postprocess(uploads, result, settings.model_name, settings.digit_threshold, metrics)
    # Serialised here, by the model itself: the same bytes FastAPI would send, without
    # its second validation pass against the response model (docs/benchmarks.md).
    return Response(content=response.model_dump_json(), media_type="application/json")


@contextmanager
def named(index: int, upload: Upload) -> Iterator[None]:
    """Name the image in its error: in a batch of 20, "truncated PNG" alone does not help."""
    try:
        yield
    except GatewayError as error:
        name = f" ({upload.filename!r})" if upload.filename else ""
        error.message = f"image {index}{name}: {error.message}"
        raise


def prepare_images(
    uploads: list[Upload], opened: list[OpenedImage], metrics: GatewayMetrics
) -> np.ndarray:
    """Decode and preprocess every opened upload into one float32 [n, 28, 28, 1] batch."""
    batch = []
    for index, (upload, image) in enumerate(zip(uploads, opened, strict=True), start=1):
        with named(index, upload):
            with metrics.time_stage("decode"):
                gray = decode(image)
            with metrics.time_stage("preprocess"):
                batch.append(mnist_like(gray, lossy=image.lossy))
    return np.stack(batch)


def postprocess(
    uploads: list[Upload],
    result: BatchPrediction,
    model_name: str,
    digit_threshold: float,
    metrics: GatewayMetrics,
) -> PredictResponse:
    predictions = [
        Prediction(filename=upload.filename, **answer)
        for upload, answer in zip(uploads, answers(result, digit_threshold, metrics), strict=True)
    ]
    model = ModelRef(name=model_name, version=result.model_version)
    return PredictResponse(model=model, predictions=predictions)


def answers(result: BatchPrediction, digit_threshold: float, metrics: GatewayMetrics) -> list[dict]:
    """Each row of a backend's answer as the fields of a prediction (digit, confidence,
    is_digit, digit_score, probabilities), counted in the metrics."""
    version = result.model_version
    scores = result.digit_scores
    # A version without digit_score (exported before it) counts every image as a digit.
    judged = (
        [True] * len(result.probabilities)
        if scores is None
        else (scores >= digit_threshold).tolist()
    )
    confidence_of = metrics.child(metrics.confidence, version)
    rows = []
    for index, row in enumerate(result.probabilities):
        digit = int(np.argmax(row))
        confidence = float(row[digit])
        is_digit = judged[index]
        rows.append(
            {
                "digit": digit,
                "confidence": round(confidence, PROBABILITY_DECIMALS),
                "is_digit": is_digit,
                "digit_score": (
                    None if scores is None else round(float(scores[index]), PROBABILITY_DECIMALS)
                ),
                "probabilities": [round(float(p), PROBABILITY_DECIMALS) for p in row],
            }
        )
        metrics.child(metrics.predictions, str(digit), version).inc()
        confidence_of.observe(confidence)
        if not is_digit:
            metrics.child(metrics.not_a_digit, version).inc()
    if version.isdigit():
        metrics.model_version.set(int(version))
    return rows
