"""POST /v1/read: images of numbers in, their digits read left to right out, in upload order.

The same request path as /v1/predict, timed the same: read uploads -> decode -> segments
(serving.preprocessing.segments: each made MNIST-like as a single digit is) -> one
backend call for every segment of every image -> one reading per image.
"""

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from contract import CHANNELS, IMAGE_SIZE
from serving.api.routes.predict import (
    ERRORS,
    PROBABILITY_DECIMALS,
    REQUEST_BODY,
    SolvedOnlyWithAQuery,
    answers,
    named,
)
from serving.api.schemas import (
    Box,
    ModelRef,
    Reading,
    ReadResponse,
    SegmentReading,
    error_responses,
)
from serving.api.uploads import Upload, read_uploads
from serving.backends.base import LABEL_PATTERN, Backend, ModelSelector
from serving.errors import TooManySegments
from serving.inline import InlineBudget
from serving.observability import GatewayMetrics
from serving.preprocessing import OpenedImage, Segment, decode, open_image, read_segments
from serving.settings import Settings

router = APIRouter(tags=["read"], route_class=SolvedOnlyWithAQuery)


@router.post(
    "/v1/read",
    summary="Read the digits of a written number",
    description=(
        "The same uploads as POST /v1/predict (multipart `file` parts or JSON "
        '`{"images": [...]}`), each holding one line of digits: a year, a house number, an '
        "amount. Each reading lists its segments left to right, with their boxes in the "
        "uploaded image's pixels (after EXIF orientation), and `text`: the segments read "
        "as digits. Segments that are not digits (a '-', a '.', a letter) have `is_digit` "
        "false and are left out of `text`. A uniform image is refused with 422 `no_ink`, "
        "one of more than GATEWAY_MAX_DIGITS_PER_IMAGE segments with 422 "
        "`too_many_segments`."
    ),
    openapi_extra={"requestBody": REQUEST_BODY},
    responses=error_responses(*ERRORS, TooManySegments),
    response_model=ReadResponse,
)
async def read(
    request: Request,
    version: Annotated[int | None, Query(gt=0, description="a model version to ask for")] = None,
    label: Annotated[
        str | None, Query(pattern=LABEL_PATTERN, description="a version label (TF Serving)")
    ] = None,
) -> Response:
    selector = ModelSelector(version, label)
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
    limit = settings.max_digits_per_image
    if InlineBudget(settings.inline_budget_ms).preprocess(len(opened), pixels):
        images = segment_images(uploads, opened, limit, metrics)
    else:
        images = await run_in_threadpool(segment_images, uploads, opened, limit, metrics)
    frames = [segment.frame for segments, _ in images for segment in segments]
    batch = np.stack(frames) if frames else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, CHANNELS))
    with metrics.time_stage("model"):
        result = await backend.predict(batch, selector)
    rows = iter(answers(result, settings.digit_threshold, metrics))
    readings = [
        reading(upload.filename, segments, scale, rows)
        for upload, (segments, scale) in zip(uploads, images, strict=True)
    ]
    model = ModelRef(name=settings.model_name, version=result.model_version)
    response = ReadResponse(model=model, readings=readings)
    return Response(content=response.model_dump_json(), media_type="application/json")


def segment_images(
    uploads: list[Upload], opened: list[OpenedImage], limit: int, metrics: GatewayMetrics
) -> list[tuple[list[Segment], tuple[float, float]]]:
    """Each opened upload's segments, and the (row, column) scale from the decoded image's
    pixels to the uploaded image's."""
    images = []
    for index, (upload, image) in enumerate(zip(uploads, opened, strict=True), start=1):
        with named(index, upload):
            with metrics.time_stage("decode"):
                gray = decode(image)
            with metrics.time_stage("preprocess"):
                segments = read_segments(gray, lossy=image.lossy, max_segments=limit)
        images.append((segments, uploaded_scale(image, *gray.shape)))
    return images


def uploaded_scale(image: OpenedImage, height: int, width: int) -> tuple[float, float]:
    """Decoding shrinks large images and turns them upright by their EXIF orientation: the
    uploaded image's size, turned as decoded, over the decoded size."""
    up_width, up_height = image.width, image.height
    if (up_width > up_height) != (width > height):  # turned by 90 degrees
        up_width, up_height = up_height, up_width
    return up_height / height, up_width / width


def reading(
    filename: str | None,
    segments: list[Segment],
    scale: tuple[float, float],
    rows,
) -> Reading:
    """One image's reading from its segments and their answers (taken from `rows`)."""
    row_scale, column_scale = scale
    digits = []
    for segment in segments:
        answer = next(rows)
        top, bottom, left, right = segment.box
        box = Box(
            x=round(left * column_scale),
            y=round(top * row_scale),
            width=max(1, round((right - left) * column_scale)),
            height=max(1, round((bottom - top) * row_scale)),
        )
        # A mark much shorter than the line is no digit, whatever the model makes of it.
        is_digit = answer["is_digit"] and not segment.mark
        digits.append(SegmentReading(**answer | {"is_digit": is_digit}, box=box))
    read_digits = [digit for digit in digits if digit.is_digit]
    # The probability that every digit read is right, the calibrated confidences taken
    # as independent; 0 where nothing was read as a digit.
    confidence = float(np.prod([digit.confidence for digit in read_digits])) if read_digits else 0.0
    return Reading(
        filename=filename,
        text="".join(str(digit.digit) for digit in read_digits),
        confidence=round(confidence, PROBABILITY_DECIMALS),
        digits=digits,
    )
