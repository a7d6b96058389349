"""Response bodies of the HTTP API (also what /docs shows)."""

import inspect
from typing import Annotated, Any

from pydantic import BaseModel, Field

from contract import DIGIT_THRESHOLD, INPUT_SHAPE, NUM_CLASSES
from serving.errors import GatewayError


class ErrorDetail(BaseModel):
    code: str = Field(examples=["bad_image"])
    message: str = Field(examples=["file 1 ('digit.png'): the PNG image is truncated or corrupt"])
    request_id: str = Field(examples=["6f1c0a2b9d7e4f3a8b5c2d1e0f9a8b7c"])


class ErrorResponse(BaseModel):
    error: ErrorDetail


def error_responses(*errors: type[GatewayError]) -> dict[int | str, dict[str, Any]]:
    """FastAPI's `responses=` for the errors a route answers with: one entry a status,
    the codes that share it (422 `invalid_request` and `no_ink`) described together."""
    codes: dict[int | str, list[str]] = {}
    for error in sorted(errors, key=lambda error: error.status_code):
        description = " ".join(inspect.getdoc(error).split())  # the class's docstring
        codes.setdefault(error.status_code, []).append(f"`{error.code}`: {description}")
    return {
        status: {"model": ErrorResponse, "description": "\n\n".join(lines)}
        for status, lines in codes.items()
    }


class ModelRef(BaseModel):
    name: str = Field(examples=["mnist"])
    version: str = Field(examples=["3"])


# The fields of one digit's answer, shared by a prediction and each digit of a reading.
DigitField = Annotated[int, Field(ge=0, le=NUM_CLASSES - 1, examples=[7])]
ConfidenceField = Annotated[float, Field(ge=0, le=1, examples=[0.9987])]
IsDigitField = Annotated[
    bool,
    Field(
        description=(
            "whether the image holds a digit at all: `digit_score` at least the threshold "
            "in force (`digit_threshold` of GET /v1/models); always true for a model version "
            "without `digit_score`. When false, `digit` is only the likeliest digit of an "
            "image that is none: show it as not a digit"
        ),
        examples=[True],
    ),
]
DigitScoreField = Annotated[
    float | None,
    Field(
        ge=0,
        le=1,
        description=(
            "the model's calibrated probability that the image holds a digit; null for a "
            "model version exported before digit_score existed (then `is_digit` is true)"
        ),
        examples=[0.9993],
    ),
]
ProbabilitiesField = Annotated[
    list[float],
    Field(
        min_length=NUM_CLASSES,
        max_length=NUM_CLASSES,
        examples=[[0.0, 0.0, 0.0001, 0.0, 0.0, 0.0, 0.0, 0.9987, 0.0, 0.0012]],
    ),
]


class Prediction(BaseModel):
    filename: str | None = Field(examples=["seven.png"])
    digit: DigitField
    confidence: ConfidenceField
    is_digit: IsDigitField
    digit_score: DigitScoreField
    probabilities: ProbabilitiesField


class PredictResponse(BaseModel):
    model: ModelRef
    predictions: list[Prediction]


class Box(BaseModel):
    """A segment's box in the uploaded image's pixels (after EXIF orientation)."""

    x: int = Field(ge=0, examples=[12])
    y: int = Field(ge=0, examples=[9])
    width: int = Field(ge=1, examples=[58])
    height: int = Field(ge=1, examples=[84])


class SegmentReading(BaseModel):
    digit: DigitField
    confidence: ConfidenceField
    is_digit: Annotated[
        bool,
        Field(
            description=(
                "whether the segment is read as a digit: its `digit_score` at least the "
                "threshold in force, and not a mark much shorter than the line (a '-', "
                "a '.'). Segments that are not are left out of `text`"
            ),
            examples=[True],
        ),
    ]
    digit_score: DigitScoreField
    probabilities: ProbabilitiesField
    box: Box


class Reading(BaseModel):
    filename: str | None = Field(examples=["year.png"])
    text: str = Field(
        description="the digits read, left to right; empty where no segment is a digit",
        examples=["2024"],
    )
    confidence: float = Field(
        ge=0,
        le=1,
        description=(
            "the probability that every digit of `text` is read right: the product of their "
            "calibrated confidences, taken as independent. It says nothing of segments read "
            "as no digit; 0 when `text` is empty"
        ),
        examples=[0.9962],
    )
    digits: list[SegmentReading] = Field(description="every segment, left to right")


class ReadResponse(BaseModel):
    model: ModelRef
    readings: list[Reading]


class InputContract(BaseModel):
    name: str = Field(examples=["image"])
    dtype: str = Field(examples=["float32"])
    shape: list[int | None] = Field(examples=[[None, *INPUT_SHAPE]])
    range: tuple[float, float] = (0.0, 1.0)
    layout: str = Field(examples=["bright ink on a dark background, centred by centre of mass"])


class OutputContract(BaseModel):
    name: str = Field(examples=["probabilities"])
    dtype: str = Field(examples=["float32"])
    shape: list[int | None] = Field(examples=[[None, NUM_CLASSES]])


class VersionDetails(BaseModel):
    serves_digit_score: bool = Field(
        description="false for a version exported before digit_score: its images all count "
        "as digits",
        examples=[True],
    )
    calibration: dict[str, Any] | None = Field(
        description=(
            "the `calibration` of the version's metadata.json, as the trainer wrote it "
            "(temperature, ECE before and after, rejection rates, ...); null where absent "
            "or not reachable (TF Serving backends)"
        ),
        examples=[
            {
                "temperature": 1.21,
                "digit_threshold": DIGIT_THRESHOLD,
                "ece_test_before": 0.0123,
                "ece_test_after": 0.0031,
                "false_rejection_rate_test": 0.0042,
                "rejection_rate_test": 0.987,
            }
        ],
    )


class RequestLimits(BaseModel):
    """What one predict request may hold: clients size their batches by it."""

    max_files_per_request: int = Field(examples=[64])
    max_request_bytes: int = Field(examples=[10485760])
    max_image_pixels: int = Field(examples=[40000000])
    max_digits_per_image: int = Field(
        description="most segments one image of POST /v1/read may hold", examples=[32]
    )


class ModelsResponse(BaseModel):
    name: str = Field(examples=["mnist"])
    version: str = Field(description="the version that answers by default", examples=["3"])
    versions: list[str] = Field(examples=[["3", "2"]])
    version_labels: dict[str, str] = Field(examples=[{"stable": "2"}])
    backend: str = Field(examples=["embedded"])
    signature: str = Field(examples=["serving_default"])
    input: InputContract
    output: OutputContract = Field(description="the probabilities output (see `outputs`)")
    outputs: list[OutputContract] = Field(
        description="every output of the signature: `probabilities`, and `digit_score` "
        "(float32 [batch]) from versions exported since it exists"
    )
    digit_threshold: float = Field(
        ge=0,
        le=1,
        description="the threshold in force: an image is a digit when its digit_score is at "
        "least this (GATEWAY_DIGIT_THRESHOLD; models are calibrated for "
        f"{DIGIT_THRESHOLD})",
        examples=[DIGIT_THRESHOLD],
    )
    version_details: dict[str, VersionDetails] = Field(
        description="by version, for the versions the backend knows about: every loaded "
        "version (embedded), the default and labelled ones (TF Serving)"
    )
    labels: list[str] = Field(examples=[["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]])
    limits: RequestLimits


class HealthResponse(BaseModel):
    status: str = Field(examples=["ok"])
