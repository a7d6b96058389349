"""Domain errors of the gateway, each carrying its HTTP status, code and description.

Raised anywhere on the request path (decoding, preprocessing, backends) and turned into
the one JSON error shape in exactly one place (`serving.app`'s exception handler):
`{"error": {"code": "...", "message": "...", "request_id": "..."}}`. The docstrings are
the descriptions /openapi.json gives (`serving.api.schemas.error_responses`).
"""


class GatewayError(Exception):
    """A failure of the gateway itself; the details go to the server log, not the client."""

    status_code: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadImage(GatewayError):
    """The bytes are not a decodable image (empty, not an image, truncated, corrupt)."""

    status_code = 400
    code = "bad_image"


class PayloadTooLarge(GatewayError):
    """Too many bytes, too many pixels (decompression bombs) or too many files."""

    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(GatewayError):
    """The body is neither multipart/form-data nor JSON, a part is declared as a non-image
    type, or the image format is not supported."""

    status_code = 415
    code = "unsupported_media_type"


class InvalidRequest(GatewayError):
    """Well-formed HTTP, but not a request this API accepts (no files, bad JSON, bad base64,
    a malformed or contradictory version or label)."""

    status_code = 422
    code = "invalid_request"


class NoInk(GatewayError):
    """The image is uniform: there is no digit to classify."""

    status_code = 422
    code = "no_ink"


class TooManySegments(GatewayError):
    """An image sent to POST /v1/read holds more separate marks than one reading may have
    (GATEWAY_MAX_DIGITS_PER_IMAGE)."""

    status_code = 422
    code = "too_many_segments"


class ModelNotFound(GatewayError):
    """The requested model, version or label is not served."""

    status_code = 404
    code = "model_not_found"


class BackendUnavailable(GatewayError):
    """No model can answer right now; the client should retry after Retry-After seconds."""

    status_code = 503
    code = "backend_unavailable"

    def __init__(self, message: str, *, retry_after_seconds: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_seconds)})


class BackendError(GatewayError):
    """The model server answered with an error that is not the client's doing (a model
    that breaks the contract, an internal error): 502 Bad Gateway."""

    status_code = 502
    code = "backend_error"


class BackendTimeout(GatewayError):
    """The model did not answer in time."""

    status_code = 504
    code = "backend_timeout"
