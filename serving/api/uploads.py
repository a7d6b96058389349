"""Read the images out of a predict request: multipart `file` parts or JSON base64.

The body is read through a byte counter, so a request over the limit is refused as soon
as it crosses it, whatever its Content-Length header claimed (or whether it had one).
A multipart body is then parsed once: by the canonical fast path (`multipart.py`) or,
when it has any other shape, by Starlette's parser.
"""

import base64
import binascii
import json
import re
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

from fastapi import Request
from pydantic import BaseModel, Field, ValidationError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from serving.api.multipart import FilePart, canonical_boundary, parse_file_parts
from serving.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType

FILE_FIELD = "file"
# Part types accepted as "maybe an image" (the bytes decide); anything else is refused.
_IMAGE_PART_TYPES = ("image/", "application/octet-stream")
_DATA_URL_PREFIX = re.compile(r"^data:[\w.+-]+/[\w.+-]+;base64,")


@dataclass(frozen=True)
class Upload:
    data: bytes
    filename: str | None = None


class PredictJSON(BaseModel):
    """JSON request body: images as base64 strings (a `data:` URL prefix is accepted)."""

    images: list[str] = Field(min_length=1, examples=[["iVBORw0KGgoAAAANSUhEUgAA..."]])


async def read_uploads(request: Request, *, max_bytes: int, max_files: int) -> list[Upload]:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"request body is {int(declared):,} bytes (limit {max_bytes:,})")
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    body = _counted(request, max_bytes)
    if media_type == "multipart/form-data":
        uploads = await _read_multipart(request, body, max_files=max_files)
    elif media_type == "application/json":
        uploads = await _read_json(body, max_files=max_files)
    else:
        shown = media_type or "none"
        raise UnsupportedMediaType(
            f"content type {shown} is not accepted; send multipart/form-data with 'file' "
            'parts or application/json {"images": [base64, ...]}'
        )
    if not uploads:
        raise InvalidRequest(f"no images in the request; send one or more '{FILE_FIELD}' parts")
    return uploads


async def _counted(request: Request, max_bytes: int) -> AsyncIterator[bytes]:
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > max_bytes:
            raise PayloadTooLarge(f"request body exceeds {max_bytes:,} bytes")
        yield chunk


async def _read_multipart(
    request: Request, body: AsyncIterator[bytes], *, max_files: int
) -> list[Upload]:
    raw = b"".join([chunk async for chunk in body])
    boundary = canonical_boundary(request.headers["content-type"].encode("latin-1"))
    parts = parse_file_parts(raw, boundary) if boundary else None
    if parts is None:
        # Anything but the canonical shape: Starlette's own parser, on the same bytes.
        return await _read_multipart_with_starlette(request, _once(raw), max_files)
    if len(parts) > max_files:
        raise _too_many_files(max_files)
    return [_upload(part, index) for index, part in enumerate(parts, start=1)]


async def _once(data: bytes) -> AsyncGenerator[bytes, None]:
    yield data


def _too_many_files(max_files: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"too many files in one request (limit {max_files})")


async def _read_multipart_with_starlette(
    request: Request, body: AsyncGenerator[bytes, None], max_files: int
) -> list[Upload]:
    parser = MultiPartParser(request.headers, body, max_files=max_files, max_fields=max_files)
    try:
        form = await parser.parse()
    except MultiPartException as error:
        if error.message.startswith("Too many files"):
            raise _too_many_files(max_files) from None
        raise InvalidRequest(f"malformed multipart body: {error.message}") from None
    try:
        uploads = []
        for name, value in form.multi_items():
            if not isinstance(value, UploadFile):
                if name == FILE_FIELD:
                    raise InvalidRequest(
                        f"part '{FILE_FIELD}' must be a file upload "
                        f"(curl -F {FILE_FIELD}=@digit.png)"
                    )
                _unexpected_field(name)
            part = FilePart(name, value.filename, value.content_type, await value.read())
            uploads.append(_upload(part, len(uploads) + 1))
        return uploads
    finally:
        await form.close()


def _upload(part: FilePart, index: int) -> Upload:
    """The part as an upload, after the checks both parsers' results go through."""
    if part.name != FILE_FIELD:
        _unexpected_field(part.name)
    part_type = (part.content_type or "").lower()
    if part_type and not part_type.startswith(_IMAGE_PART_TYPES):
        raise UnsupportedMediaType(
            f"file {index} ({part.filename!r}) has content type {part_type}; send images"
        )
    return Upload(data=part.data, filename=part.filename)


def _unexpected_field(name: str) -> None:
    raise InvalidRequest(f"unexpected form field '{name}'; send images as '{FILE_FIELD}' parts")


async def _read_json(body: AsyncIterator[bytes], *, max_files: int) -> list[Upload]:
    raw = b"".join([chunk async for chunk in body])
    if not raw.strip():
        raise InvalidRequest('empty JSON body; send {"images": [base64, ...]}')
    try:
        payload = PredictJSON.model_validate(json.loads(raw))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidRequest("the body is not valid JSON") from None
    except ValidationError as error:
        raise InvalidRequest(
            'expected {"images": [base64, ...]} with at least one image: ' + _summarise(error)
        ) from None
    if len(payload.images) > max_files:
        raise PayloadTooLarge(f"too many images in one request (limit {max_files})")
    uploads = []
    for index, text in enumerate(payload.images, start=1):
        try:
            data = base64.b64decode(_DATA_URL_PREFIX.sub("", text, count=1), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest(f"image {index} is not valid base64") from None
        uploads.append(Upload(data=data))
    return uploads


def _summarise(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in item['loc']) or 'body'}: {item['msg']}"
        for item in error.errors()
    )
