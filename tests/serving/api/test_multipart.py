"""The canonical-multipart fast path gives exactly what Starlette's parser gives.

Each body goes through `read_uploads` twice: as the gateway reads it (fast path first)
and through Starlette's parser alone; the uploads, or the error's type and message, must
be the same. Separately: what real clients send is canonical, so the fast path is the
one that runs for them."""

import random

import httpx
import pytest
import requests
from starlette.requests import Request

import serving.api.uploads
from client.payloads import multipart_body
from serving.api.multipart import canonical_boundary, parse_file_parts
from serving.api.uploads import read_uploads
from serving.errors import GatewayError

BOUNDARY = "b0undary"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
MAX_BYTES = 1_000_000
MAX_FILES = 4
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 3


def request_for(body: bytes, content_type: str) -> Request:
    chunks = [body[i : i + 1000] for i in range(0, len(body), 1000)] or [b""]

    async def receive():
        chunk = chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    headers = [(b"content-type", content_type.encode("latin-1"))]
    return Request({"type": "http", "method": "POST", "headers": headers}, receive)


async def outcome(body: bytes, content_type: str, max_bytes: int = MAX_BYTES):
    try:
        uploads = await read_uploads(
            request_for(body, content_type), max_bytes=max_bytes, max_files=MAX_FILES
        )
    except GatewayError as error:
        return type(error).__name__, error.status_code, error.message
    return [(u.filename, u.data) for u in uploads]


async def assert_read_as_starlette_reads_it(body: bytes, content_type: str = CONTENT_TYPE):
    with_fast_path = await outcome(body, content_type)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(serving.api.uploads, "parse_file_parts", lambda body, boundary: None)
        with_starlette_only = await outcome(body, content_type)
    assert with_fast_path == with_starlette_only


def part(data=PNG, *, name="file", filename="digit.png", content_type="image/png", extra=b""):
    disposition = f'form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    headers = f"Content-Disposition: {disposition}\r\n".encode()
    if content_type is not None:
        headers += f"Content-Type: {content_type}\r\n".encode()
    return headers + extra + b"\r\n" + data


def body_of(*parts: bytes, boundary=BOUNDARY, end=b"\r\n") -> bytes:
    opening = f"--{boundary}\r\n".encode()
    delimiter = f"\r\n--{boundary}\r\n".encode()
    closing = f"\r\n--{boundary}--".encode()
    return opening + delimiter.join(parts) + closing + end


CANONICAL = {
    "one png": body_of(part()),
    "three files": body_of(part(), part(b"second"), part(b"third", filename="c.jpg")),
    "empty data": body_of(part(b"")),
    "data with CRLFs and dashes": body_of(part(b"\r\n--\r\n\r\n-- b0undar\r\n")),
    "data ending in CR": body_of(part(b"abc\r")),
    "data ending in dashes": body_of(part(b"abc--")),
    "no part content type": body_of(part(content_type=None)),
    "octet-stream": body_of(part(content_type="application/octet-stream")),
    "unicode filename": body_of(part(filename="zéro ٣ 七.png")),
    "filename with spaces and parens": body_of(part(filename="my digit (1).png")),
    "empty filename": body_of(part(filename="")),
    "latin-1 filename": body_of(part(filename="zero.png")).replace(b"zero", b"z\xe9ro"),
    "no final CRLF": body_of(part(), end=b""),
    "extra part header": body_of(part(extra=b"X-Note: hello\r\n")),
    "header without space": body_of(part().replace(b"Content-Type: ", b"Content-Type:")),
    "text part type refused": body_of(part(content_type="text/plain")),
    "unexpected field name": body_of(part(name="image")),
    "second part refused": body_of(part(), part(name="other")),
    "too many files": body_of(*[part()] * (MAX_FILES + 1)),
}
UNUSUAL = {
    "preamble": b"preamble\r\n" + body_of(part()),
    "epilogue": body_of(part(), end=b"\r\nepilogue"),
    "non-file field": body_of(part(b"7", filename=None, content_type=None)),
    "non-file field named otherwise": body_of(part(b"x", name="note", filename=None)),
    "quote escaped in filename": body_of(part(filename='a\\"b.png')),
    "semicolon in filename": body_of(part(filename="a;b.png")),
    "IE full path": body_of(part(filename="C:\\\\Users\\\\me\\\\digit.png")),
    "RFC 5987 filename": (
        f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename*=UTF-8''d.png"
        f"\r\nContent-Type: image/png\r\n\r\n".encode()
        + PNG
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    ),
    "no name": body_of(part().replace(b'name="file"; ', b"")),
    "duplicate content type": body_of(part(extra=b"Content-Type: text/plain\r\n")),
    "bare LF line endings": body_of(part()).replace(b"\r\n", b"\n"),
    "truncated": body_of(part())[:-30],
    "no closing boundary": body_of(part())[: -len(f"--{BOUNDARY}--\r\n")],
    "look-alike boundary in data": body_of(part(b"x\r\n--" + BOUNDARY.encode() + b"x")),
    "empty body": b"",
    "only the closing boundary": f"--{BOUNDARY}--\r\n".encode(),
    "folded header": body_of(part(extra=b"X-Note: a\r\n b\r\n")),
    "bad header name": body_of(part(extra=b"X Note: a\r\n")),
}


@pytest.mark.parametrize("body", CANONICAL.values(), ids=CANONICAL.keys())
async def test_canonical_bodies_take_the_fast_path_with_starlettes_result(body):
    assert parse_file_parts(body, BOUNDARY.encode()) is not None
    await assert_read_as_starlette_reads_it(body, CONTENT_TYPE)


@pytest.mark.parametrize("body", UNUSUAL.values(), ids=UNUSUAL.keys())
async def test_other_bodies_are_left_to_starlette(body):
    assert parse_file_parts(body, BOUNDARY.encode()) is None
    await assert_read_as_starlette_reads_it(body, CONTENT_TYPE)


@pytest.mark.parametrize(
    "content_type",
    [
        f'multipart/form-data; boundary="{BOUNDARY}"',
        f"multipart/form-data;boundary={BOUNDARY}",
        f"Multipart/Form-Data; Boundary={BOUNDARY}",
        f"multipart/form-data; boundary={BOUNDARY}; charset=latin-1",
        f"multipart/form-data; boundary={BOUNDARY} ",
        f"multipart/form-data; boundary={BOUNDARY}\x0b",
        "multipart/form-data; boundary=other",
        "multipart/form-data",
    ],
)
async def test_content_type_variants_read_as_starlette_reads_them(content_type):
    body = body_of(part())
    await assert_read_as_starlette_reads_it(body, content_type)


def test_only_a_plain_boundary_parameter_is_canonical():
    assert canonical_boundary(b'multipart/form-data; boundary="a b"') is None
    assert canonical_boundary(b"multipart/form-data; boundary=ab; charset=utf-8") is None
    assert canonical_boundary(b"multipart/form-data; boundary=" + b"a" * 71) is None
    assert canonical_boundary(b"multipart/form-data; boundary=x-1") == b"x-1"


def _bodies_real_clients_send() -> dict[str, tuple[bytes, str]]:
    files = [("digit.png", PNG, "image/png"), ("photo 2.jpg", b"\xff\xd8jpeg", "image/jpeg")]
    httpx_request = httpx.Request(
        "POST", "http://gateway/v1/predict", files=[("file", f) for f in files]
    )
    requests_request = requests.Request(
        "POST", "http://gateway/v1/predict", files=[("file", f) for f in files]
    ).prepare()
    ours = multipart_body(files)
    return {
        "httpx": (httpx_request.read(), httpx_request.headers["content-type"]),
        "requests": (requests_request.body, requests_request.headers["Content-Type"]),
        "mnist-client": (ours.data, ours.content_type),
        # The shapes Chromium's FormData and curl -F send, with their boundary styles.
        "chromium": (
            b"------WebKitFormBoundaryx8FmRq2Ck1IbCxzT\r\n"
            b'Content-Disposition: form-data; name="file"; filename="drawing.png"\r\n'
            b"Content-Type: image/png\r\n\r\n" + PNG + b"\r\n"
            b"------WebKitFormBoundaryx8FmRq2Ck1IbCxzT--\r\n",
            "multipart/form-data; boundary=----WebKitFormBoundaryx8FmRq2Ck1IbCxzT",
        ),
        "curl": (
            b"--------------------------d74496d66958873e\r\n"
            b'Content-Disposition: form-data; name="file"; filename="digit.png"\r\n'
            b"Content-Type: image/png\r\n\r\n" + PNG + b"\r\n"
            b"--------------------------d74496d66958873e--\r\n",
            "multipart/form-data; boundary=------------------------d74496d66958873e",
        ),
    }


REAL_CLIENTS = _bodies_real_clients_send()


@pytest.mark.parametrize(("body", "content_type"), REAL_CLIENTS.values(), ids=REAL_CLIENTS.keys())
async def test_what_real_clients_send_takes_the_fast_path(body, content_type):
    boundary = canonical_boundary(content_type.encode("latin-1"))
    assert boundary is not None
    parts = parse_file_parts(body, boundary)
    assert parts is not None
    assert [p.name for p in parts] == ["file"] * len(parts)
    await assert_read_as_starlette_reads_it(body, content_type)


def mutants(body: bytes, count: int, seed: int) -> list[bytes]:
    """The body with a few bytes cut, inserted or replaced, or truncated: mostly bodies
    the fast path must refuse, some it must still read as Starlette does."""
    rng = random.Random(seed)
    pieces = [b"\r", b"\n", b"-", b"--", b'"', b";", b"\\", b" ", b"\t", b":", b"=", b"*"]
    pieces += [b"\xe9", BOUNDARY.encode(), b"\r\n--" + BOUNDARY.encode()]
    out = []
    for _ in range(count):
        mutant = bytearray(body)
        for _ in range(rng.randint(1, 3)):
            at = rng.randint(0, len(mutant))
            kind = rng.random()
            if kind < 0.3:
                del mutant[at : at + rng.randint(1, 3)]
            elif kind < 0.7:
                mutant[at:at] = rng.choice(pieces)
            elif kind < 0.9:
                mutant[at : at + 1] = rng.choice(pieces)
            else:
                del mutant[at:]
        out.append(bytes(mutant))
    return out


SMALL_PNG = PNG[:40]


@pytest.mark.parametrize(
    "body",
    [
        body_of(part(SMALL_PNG)),
        body_of(part(SMALL_PNG, filename="a b.png"), part(b"\r\n--x", content_type=None)),
        body_of(part(b"7", filename=None, content_type=None), part(SMALL_PNG)),
    ],
    ids=["one file", "two files", "field then file"],
)
async def test_mutated_bodies_read_as_starlette_reads_them(body):
    for mutant in mutants(body, count=150, seed=len(body)):
        await assert_read_as_starlette_reads_it(mutant)


@pytest.mark.parametrize(
    "body",
    [
        b"--not-the-boundary\r\n" + b"x" * 5000,
        body_of(*[part()] * (MAX_FILES + 1), part(b"x" * 5000)),
        body_of(part(b"x" * 5000)),
    ],
    ids=["malformed", "too many files", "canonical"],
)
async def test_a_body_over_the_size_limit_is_413_whatever_its_shape(body):
    # Refused as the limit is crossed, before either parser sees a byte of it.
    assert await outcome(body, CONTENT_TYPE, max_bytes=4000) == (
        "PayloadTooLarge",
        413,
        "request body exceeds 4,000 bytes",
    )
