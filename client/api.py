"""A small Python client for the gateway's `POST /v1/predict` and `POST /v1/read`.

    from client import Client
    for p in Client("http://127.0.0.1:8000").predict(["seven.png", "digits/"]):
        print(p.filename, p.digit if p.is_digit else "not a digit", p.confidence)
    for r in Client("http://127.0.0.1:8000").read(["year.jpg"]):
        print(r.filename, r.text, r.confidence)

Many images go in few requests: inputs are sent in chunks within the server's limits
(files and bytes per request, asked once from `GET /v1/models`), a few chunks in flight
at once. A chunk the server rejects is split until the offending image is
alone, so one bad file costs only its own prediction. 503 answers are retried after the
server's `Retry-After`, transport errors and 502/504 with exponential back-off, both
bounded.
"""

import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

logger = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:8000"
STDIN = "-"
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"}
)
# Used when the server does not report its limit; the gateway's default is 64.
FALLBACK_MAX_FILES = 32
# Keep a chunk's body well under the gateway's default 10 MiB request limit.
DEFAULT_MAX_CHUNK_BYTES = 8 * 1024 * 1024
RETRYABLE_STATUSES = frozenset({502, 503, 504})
# Room for the multipart boundaries and part headers around the image bytes.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class Prediction:
    filename: str
    digit: int  # the likeliest digit; not the answer when is_digit is false
    confidence: float
    probabilities: tuple[float, ...]
    model_name: str
    model_version: str
    # Whether the image holds a digit at all (the gateway's threshold on digit_score).
    is_digit: bool = True
    # The model's calibrated probability that it does; None from a model version (or a
    # gateway) older than digit_score.
    digit_score: float | None = None


@dataclass(frozen=True)
class ReadDigit:
    """One segment of a reading, left to right."""

    digit: int  # the likeliest digit; not read when is_digit is false
    confidence: float
    is_digit: bool
    digit_score: float | None
    probabilities: tuple[float, ...]
    box: tuple[int, int, int, int]  # x, y, width, height in the image's pixels


@dataclass(frozen=True)
class Reading:
    filename: str
    text: str  # the segments read as digits, left to right
    confidence: float  # that every digit of `text` is right
    digits: tuple[ReadDigit, ...]
    model_name: str
    model_version: str


class ClientError(Exception):
    """Base of everything `Client` raises; `filename` names the input when one is to blame."""

    def __init__(self, message: str, *, filename: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.filename = filename


class UnreadableFile(ClientError):
    """An input could not be read on this side (missing, a permission, not a file)."""


class RequestRejected(ClientError):
    """The server answered 4xx: the request or an image is not acceptable."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str,
        request_id: str | None = None,
        filename: str | None = None,
    ) -> None:
        super().__init__(message, filename=filename)
        self.status = status
        self.code = code
        self.request_id = request_id


class ServerUnavailable(ClientError):
    """No answer: connection refused, timeouts, or 5xx still there after the retries."""


@dataclass(frozen=True)
class Failure:
    filename: str
    error: ClientError


Result = Prediction | Failure
ReadResult = Reading | Failure


@dataclass(frozen=True)
class ImageSource:
    """One input: a file, or the bytes that came on stdin."""

    name: str
    path: Path | None = None
    data: bytes | None = None

    @property
    def upload_name(self) -> str:
        """What the server is told: the base name, never the local directories."""
        return "stdin" if self.path is None else self.path.name

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.path is not None
        try:
            return self.path.read_bytes()
        except OSError as exc:
            raise UnreadableFile(
                f"cannot read {self.name}: {exc.strerror or exc}", filename=self.name
            ) from exc


def collect_sources(
    inputs: Iterable[str | Path], *, recursive: bool = False, stdin: bytes | None = None
) -> list[ImageSource]:
    """Expand inputs into image sources, in order: files as given, directories' images sorted.

    `-` stands for the bytes on standard input (read once). A path that does not exist
    is kept as a source whose read fails, so it is reported beside the other results.
    """
    sources: list[ImageSource] = []
    for item in inputs:
        if str(item) == STDIN:
            data = stdin if stdin is not None else sys.stdin.buffer.read()
            sources.append(ImageSource(name=STDIN, data=data))
            continue
        path = Path(item)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            found = sorted(
                p for p in path.glob(pattern) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
            )
            if not found:
                # An empty directory is an input the user expected images from.
                sources.append(ImageSource(name=str(path), path=path))
            sources.extend(ImageSource(name=str(p), path=p) for p in found)
        else:
            sources.append(ImageSource(name=str(path), path=path))
    return sources


class Client:
    """Thread-safe; reuses one HTTP connection pool. Use as a context manager or `close()`."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        max_files_per_request: int | None = None,
        max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
        concurrency: int = 4,
        max_retry_wait: float = 30.0,
        backoff: float = 0.5,
    ) -> None:
        if retries < 0 or concurrency < 1 or timeout <= 0:
            raise ValueError("retries must be >= 0, concurrency >= 1, timeout > 0")
        self.url = url.rstrip("/")
        self.retries = retries
        self.max_chunk_bytes = max_chunk_bytes
        self.concurrency = concurrency
        self.max_retry_wait = max_retry_wait
        self.backoff = backoff
        self._max_files = max_files_per_request
        self._http = httpx.Client(
            base_url=self.url,
            timeout=timeout,
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )
        # Requests sent, including retries and split chunks: what "few requests" is measured by.
        self.requests_sent = 0
        self._count_lock = threading.Lock()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def predict(self, inputs: Iterable[str | Path]) -> list[Prediction]:
        """Predictions for files and directories (`-` = stdin), in input order.

        Raises the first `ClientError` met; `predict_all` collects failures instead.
        """
        predictions = []
        for result in self.predict_all(collect_sources(inputs)):
            if isinstance(result, Failure):
                raise result.error
            predictions.append(result)
        return predictions

    def predict_all(
        self,
        sources: list[ImageSource],
        *,
        on_progress: Callable[[int], None] | None = None,
    ) -> Iterator[Result]:
        """One result per source, in order; a Failure for each source that got no prediction.

        `ServerUnavailable` is raised, not collected: without a server nothing else can succeed.
        """
        yield from self._ask_all(_PREDICT, sources, on_progress)

    def read(self, inputs: Iterable[str | Path]) -> list[Reading]:
        """Readings of numbers in files and directories (`-` = stdin), in input order.

        Raises the first `ClientError` met; `read_all` collects failures instead.
        """
        readings = []
        for result in self.read_all(collect_sources(inputs)):
            if isinstance(result, Failure):
                raise result.error
            readings.append(result)
        return readings

    def read_all(
        self,
        sources: list[ImageSource],
        *,
        on_progress: Callable[[int], None] | None = None,
    ) -> Iterator[ReadResult]:
        """As predict_all, through `POST /v1/read`: one Reading or Failure per source."""
        yield from self._ask_all(_READ, sources, on_progress)

    def _ask_all(self, endpoint: "_Endpoint", sources, on_progress) -> Iterator:
        if not sources:
            return
        chunks = list(self._chunks(sources))
        pool = ThreadPoolExecutor(max_workers=min(self.concurrency, len(chunks)))
        try:
            for results in pool.map(lambda chunk: self._ask_chunk(endpoint, chunk), chunks):
                yield from results
                if on_progress is not None:
                    on_progress(len(results))
        finally:
            # On an error (or a consumer that stops early) chunks not started are dropped.
            pool.shutdown(wait=True, cancel_futures=True)

    def max_files_per_request(self) -> int:
        if self._max_files is None:
            limits = self._ask_server_limits()
            self._max_files = _positive_int(limits.get("max_files_per_request"))
            self._max_files = self._max_files or FALLBACK_MAX_FILES
            max_bytes = _positive_int(limits.get("max_request_bytes"))
            if max_bytes and max_bytes > MULTIPART_OVERHEAD_BYTES:
                self.max_chunk_bytes = min(
                    self.max_chunk_bytes, max_bytes - MULTIPART_OVERHEAD_BYTES
                )
        return self._max_files

    def _ask_server_limits(self) -> dict:
        """The request limits `GET /v1/models` reports, or {} when it does not answer them.

        A hint only: one try, no retries, any problem means "unknown" (the predict
        requests report real trouble; a 413 splits the chunk anyway).
        """
        with self._count_lock:
            self.requests_sent += 1
        try:
            response = self._http.get("/v1/models")
            limits = response.json().get("limits") if response.is_success else None
        except (httpx.HTTPError, ValueError, AttributeError):
            return {}
        return limits if isinstance(limits, dict) else {}

    def _chunks(self, sources: list[ImageSource]) -> Iterator[list[ImageSource]]:
        """Group sources by count only; bytes are checked once the files are read."""
        size = self.max_files_per_request()
        for start in range(0, len(sources), size):
            yield sources[start : start + size]

    def _ask_chunk(self, endpoint: "_Endpoint", chunk: list[ImageSource]) -> list:
        results: dict[int, Result | ReadResult] = {}
        readable: list[tuple[int, ImageSource, bytes]] = []
        for index, source in enumerate(chunk):
            try:
                readable.append((index, source, source.read()))
            except UnreadableFile as exc:
                results[index] = Failure(source.name, exc)
        for group in _split_by_bytes(readable, self.max_chunk_bytes):
            results.update(self._ask_group(endpoint, group))
        return [results[index] for index in range(len(chunk))]

    def _ask_group(
        self, endpoint: "_Endpoint", group: list[tuple[int, ImageSource, bytes]]
    ) -> dict[int, Result | ReadResult]:
        files = [("file", (source.upload_name, data)) for _, source, data in group]
        try:
            response = self._send("POST", endpoint.path, files=files)
        except RequestRejected as exc:
            if len(group) == 1:
                index, source, _ = group[0]
                exc.filename = source.name
                return {index: Failure(source.name, exc)}
            # Which image is to blame? Split until it stands alone; the rest still get answers.
            middle = len(group) // 2
            return self._ask_group(endpoint, group[:middle]) | self._ask_group(
                endpoint, group[middle:]
            )
        body = response.json()
        model = body.get("model", {})
        entries = body.get(endpoint.key, [])
        if len(entries) != len(group):
            raise ServerUnavailable(
                f"server answered {len(entries)} {endpoint.key} for {len(group)} images"
            )
        name, version = str(model.get("name", "")), str(model.get("version", ""))
        return {
            index: endpoint.parse(source.name, entry, name, version)
            for (index, source, _), entry in zip(group, entries, strict=True)
        }

    def _send(self, method: str, path: str, **kwargs) -> httpx.Response:
        """One logical request with bounded retries; 2xx returned, 4xx raised as rejected."""
        attempt = 0
        while True:
            with self._count_lock:
                self.requests_sent += 1
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                problem = _describe_transport_error(exc, self.url)
                delay = self.backoff * 2**attempt
            else:
                if response.is_success:
                    return response
                if response.status_code < 500:
                    raise _rejected(response)
                problem = f"server answered {response.status_code}: {_error_message(response)}"
                if response.status_code not in RETRYABLE_STATUSES:
                    raise ServerUnavailable(problem)
                delay = _retry_after(response) if response.status_code == 503 else None
                if delay is None:
                    delay = self.backoff * 2**attempt
            if attempt >= self.retries:
                raise ServerUnavailable(problem)
            delay = min(delay, self.max_retry_wait)
            logger.info("retrying %s %s in %.1fs: %s", method, path, delay, problem)
            time.sleep(delay)
            attempt += 1


def _prediction(filename: str, entry: dict, model_name: str, model_version: str) -> Prediction:
    return Prediction(
        filename=filename,
        digit=int(entry["digit"]),
        confidence=float(entry["confidence"]),
        probabilities=tuple(float(p) for p in entry["probabilities"]),
        model_name=model_name,
        model_version=model_version,
        is_digit=bool(entry.get("is_digit", True)),
        digit_score=_optional_float(entry.get("digit_score")),
    )


def _reading(filename: str, entry: dict, model_name: str, model_version: str) -> Reading:
    digits = tuple(
        ReadDigit(
            digit=int(digit["digit"]),
            confidence=float(digit["confidence"]),
            is_digit=bool(digit["is_digit"]),
            digit_score=_optional_float(digit.get("digit_score")),
            probabilities=tuple(float(p) for p in digit["probabilities"]),
            box=tuple(int(digit["box"][key]) for key in ("x", "y", "width", "height")),
        )
        for digit in entry["digits"]
    )
    return Reading(
        filename=filename,
        text=str(entry["text"]),
        confidence=float(entry["confidence"]),
        digits=digits,
        model_name=model_name,
        model_version=model_version,
    )


@dataclass(frozen=True)
class _Endpoint:
    path: str
    key: str  # the list in the answer, one entry per image
    parse: Callable[[str, dict, str, str], Prediction | Reading]


_PREDICT = _Endpoint("/v1/predict", "predictions", _prediction)
_READ = _Endpoint("/v1/read", "readings", _reading)


def _optional_float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _positive_int(value: object) -> int | None:
    return value if isinstance(value, int) and value > 0 else None


def _split_by_bytes(
    items: list[tuple[int, ImageSource, bytes]], max_bytes: int
) -> Iterator[list[tuple[int, ImageSource, bytes]]]:
    group: list[tuple[int, ImageSource, bytes]] = []
    size = 0
    for item in items:
        if group and size + len(item[2]) > max_bytes:
            yield group
            group, size = [], 0
        group.append(item)
        size += len(item[2])
    if group:
        yield group


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare from this server; fall back to back-off


def _error_body(response: httpx.Response) -> dict:
    try:
        error = response.json().get("error")
    except (json.JSONDecodeError, AttributeError):
        return {}
    return error if isinstance(error, dict) else {}


def _error_message(response: httpx.Response) -> str:
    return str(_error_body(response).get("message") or response.reason_phrase)


def _rejected(response: httpx.Response) -> RequestRejected:
    error = _error_body(response)
    return RequestRejected(
        _error_message(response),
        status=response.status_code,
        code=str(error.get("code") or f"http_{response.status_code}"),
        request_id=error.get("request_id"),
    )


def _describe_transport_error(exc: httpx.TransportError, url: str) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer from {url} in time ({type(exc).__name__})"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect to {url}: {exc}"
    return f"connection to {url} failed: {exc}"
