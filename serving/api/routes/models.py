"""What is served: model name, versions, backend kind, the input/output contract, the
digit threshold in force and what is known of each version (digit_score, calibration)."""

from fastapi import APIRouter

from contract import (
    DIGIT_SCORE_KEY,
    IMAGE_SIZE,
    INPUT_KEY,
    INPUT_SHAPE,
    LABELS,
    NUM_CLASSES,
    OUTPUT_KEY,
    SIGNATURE_NAME,
)
from serving.api.deps import BackendDep, SettingsDep
from serving.api.schemas import (
    InputContract,
    ModelsResponse,
    OutputContract,
    RequestLimits,
    VersionDetails,
    error_responses,
)
from serving.errors import BackendError, BackendTimeout, BackendUnavailable, GatewayError

router = APIRouter(tags=["models"])

INPUT_CONTRACT = InputContract(
    name=INPUT_KEY,
    dtype="float32",
    shape=[None, *INPUT_SHAPE],
    range=(0.0, 1.0),
    layout=(
        f"{IMAGE_SIZE}x{IMAGE_SIZE} grayscale, bright ink on a dark background, "
        "digit fitted into 20x20 and centred by centre of mass (MNIST)"
    ),
)
OUTPUT_CONTRACT = OutputContract(name=OUTPUT_KEY, dtype="float32", shape=[None, NUM_CLASSES])
OUTPUTS = [OUTPUT_CONTRACT, OutputContract(name=DIGIT_SCORE_KEY, dtype="float32", shape=[None])]


@router.get(
    "/v1/models",
    summary="The served model: versions, backend and input contract",
    responses=error_responses(BackendError, BackendUnavailable, BackendTimeout, GatewayError),
)
async def models(backend: BackendDep, settings: SettingsDep) -> ModelsResponse:
    info = await backend.model_info()
    return ModelsResponse(
        name=info.name,
        version=info.version,
        versions=list(info.available_versions or (info.version,)),
        version_labels=dict(info.version_labels),
        backend=backend.kind,
        signature=SIGNATURE_NAME,
        input=INPUT_CONTRACT,
        output=OUTPUT_CONTRACT,
        outputs=OUTPUTS,
        digit_threshold=settings.digit_threshold,
        version_details={
            version: VersionDetails(
                serves_digit_score=details.serves_digit_score,
                calibration=None if details.calibration is None else dict(details.calibration),
            )
            for version, details in info.version_details.items()
        },
        labels=list(LABELS),
        limits=RequestLimits(
            max_files_per_request=settings.max_files_per_request,
            max_request_bytes=settings.max_request_bytes,
            max_image_pixels=settings.max_image_pixels,
            max_digits_per_image=settings.max_digits_per_image,
        ),
    )
