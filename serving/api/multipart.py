"""The common shape of a multipart/form-data upload, parsed with a few `bytes.find` calls.

Starlette's parser (python-multipart) handles every legal body, in Python, part by part
through callbacks and a spooled temporary file per file: several times the cost of these
few searches for the one small image a typical request holds (docs/benchmarks.md).
Browsers, curl, httpx, requests and our own client all send one canonical shape:

    --B CRLF  Content-Disposition: form-data; name="file"; filename="x.png" CRLF
              Content-Type: image/png CRLF  CRLF  <data>  CRLF
    --B CRLF  ...next part...
    --B-- [CRLF]

`parse_file_parts` parses exactly that shape and gives the parts Starlette would give.
For anything else (a preamble or epilogue, escapes or `filename*=` in a header, a part
without a filename, folded or oversized headers, bare LFs, a truncated body...) it
returns None and the caller hands the same bytes to Starlette's parser instead: each
body is parsed once, by one of the two, and every odd or malformed body is judged by the
library.
"""

import re
from dataclasses import dataclass

# multipart/form-data with a boundary and nothing else; RFC 2046 boundary characters
# (no space), at most 70 of them.
_CONTENT_TYPE = re.compile(
    rb'multipart/form-data; ?boundary=(?P<quote>"?)(?P<boundary>[0-9A-Za-z\'()+_,./:=?-]{1,70})'
    rb"(?P=quote)",
    re.IGNORECASE,
)
# A header line as python-multipart reads it: a token, a colon, spaces, the value.
_HEADER_LINE = re.compile(rb"(?P<name>[!#$%&'*+.^_`|~0-9A-Za-z-]+): *(?P<value>[^\r\n]*)")
# The disposition of a file part, with plain quoted values (no quote, backslash or
# semicolon inside: those are where parsers' quoting rules differ).
_FILE_DISPOSITION = re.compile(
    rb'form-data; name="(?P<name>[^"\\;\r\n]*)"; filename="(?P<filename>[^"\\;\r\n]*)"'
)
# Within python-multipart's limits per part (8 headers, lines of at most 4,224 bytes).
_MAX_HEADERS = 8
_MAX_HEADER_LINE = 4096


@dataclass(frozen=True)
class FilePart:
    name: str
    filename: str | None
    content_type: str | None
    data: bytes


def canonical_boundary(content_type: bytes) -> bytes | None:
    """The boundary of a plain `multipart/form-data; boundary=...` header, else None."""
    # Only spaces and tabs, as python-multipart strips parameters: not every whitespace.
    match = _CONTENT_TYPE.fullmatch(content_type.strip(b" \t"))
    return match["boundary"] if match else None


def parse_file_parts(body: bytes, boundary: bytes) -> list[FilePart] | None:
    """Every part of a canonical body, in order; None when the body is not canonical."""
    opening = b"--" + boundary + b"\r\n"
    if not body.startswith(opening):
        return None
    delimiter = b"\r\n--" + boundary
    parts = []
    start = len(opening)
    while True:
        end = body.find(delimiter, start)
        if end < 0:
            return None  # no closing boundary: truncated
        part = _file_part(body, start, end)
        if part is None:
            return None
        parts.append(part)
        after = end + len(delimiter)
        if body.startswith(b"\r\n", after):
            start = after + 2
        elif body.startswith(b"--", after) and body[after + 2 :] in (b"", b"\r\n"):
            return parts
        else:
            return None  # transport padding, an epilogue or a look-alike boundary


def _file_part(body: bytes, start: int, end: int) -> FilePart | None:
    headers_end = body.find(b"\r\n\r\n", start, end)
    if headers_end < 0:
        return None
    lines = body[start:headers_end].split(b"\r\n")
    if len(lines) > _MAX_HEADERS:
        return None
    disposition = content_type = None
    seen = set()
    for line in lines:
        header = _HEADER_LINE.fullmatch(line)
        if header is None or len(line) > _MAX_HEADER_LINE:
            return None
        name = header["name"].lower()
        if name in seen:
            return None  # which duplicate wins is a parser's choice: let Starlette's decide
        seen.add(name)
        if name == b"content-disposition":
            disposition = _FILE_DISPOSITION.fullmatch(header["value"])
            if disposition is None:
                return None
        elif name == b"content-type":
            content_type = header["value"].decode("latin-1")  # as Starlette's Headers decode
    if disposition is None:
        return None
    return FilePart(
        name=_decode(disposition["name"]),
        filename=_decode(disposition["filename"]),
        content_type=content_type,
        data=body[headers_end + 4 : end],
    )


def _decode(value: bytes) -> str:
    # Starlette's rule for names and filenames: UTF-8, else Latin-1.
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")
