"""`mnist-client predict IMAGE...`: digits for image files, directories or stdin;
`mnist-client read IMAGE...`: the numbers written in them (one line of digits each).

Exit codes (also in the README):
  0  every image got a prediction (a reading)
  1  unexpected error (a bug: please report it)
  2  usage error (bad arguments)
  3  at least one input could not be read (missing file, permission, empty directory)
  4  the server rejected at least one image or request (4xx: not an image, too large, ...)
  5  the server is unavailable (connection refused, timeout, 5xx after the retries)
When several apply, the highest code wins; predictions that succeeded are still printed.
"""

import argparse
import json
import logging
import sys
from typing import TextIO

import httpx

from client.api import (
    DEFAULT_URL,
    STDIN,
    Client,
    Failure,
    Prediction,
    Reading,
    ReadResult,
    RequestRejected,
    Result,
    ServerUnavailable,
    UnreadableFile,
    collect_sources,
)

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_USAGE = 2
EXIT_UNREADABLE = 3
EXIT_REJECTED = 4
EXIT_UNAVAILABLE = 5

SPARK_BLOCKS = "▁▂▃▄▅▆▇█"
SPARK_ASCII = "_.:-=+*#"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mnist-client",
        description="Recognise handwritten digits with the mnist-serving gateway.",
        epilog="Exit codes: 0 ok, 2 usage, 3 unreadable input, 4 rejected by the server (4xx), "
        "5 server unavailable.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser(
        "predict",
        help="predict the digit in each image",
        description="Predict the digit in each image. IMAGE is a file, a directory "
        "(its image files, sorted) or - for standard input.",
    )
    read = commands.add_parser(
        "read",
        help="read the number written in each image",
        description="Read the number in each image (one line of digits: a year, a house "
        "number, an amount), digits left to right. IMAGE is a file, a directory (its image "
        "files, sorted) or - for standard input.",
    )
    for command in (predict, read):
        _add_common_arguments(command)
    return parser


def _add_common_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("images", nargs="+", metavar="IMAGE")
    command.add_argument("--url", default=DEFAULT_URL, help=f"gateway URL (default {DEFAULT_URL})")
    command.add_argument("--json", action="store_true", help="one JSON object per image per line")
    command.add_argument(
        "-r", "--recursive", action="store_true", help="include images in subdirectories"
    )
    command.add_argument(
        "--timeout", type=_positive_float, default=30.0, help="seconds per request (default 30)"
    )
    command.add_argument(
        "--retries",
        type=_non_negative_int,
        default=3,
        help="retries on 503/502/504 and connection errors (default 3)",
    )
    command.add_argument(
        "--batch-size",
        type=_positive_int,
        default=None,
        help="images per request (default: the server's limit)",
    )
    command.add_argument(
        "--concurrency", type=_positive_int, default=4, help="requests in flight (default 4)"
    )
    command.add_argument(
        "--no-progress", action="store_true", help="no progress bar, even on a terminal"
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 on a usage error
    logging.basicConfig(level=logging.WARNING, format="mnist-client: %(message)s")
    if args.images.count(STDIN) > 1:
        parser.error("- (standard input) can be given only once")
    if not args.url.startswith(("http://", "https://")):
        parser.error(f"--url must start with http:// or https://, got {args.url!r}")
    try:
        return _run(args)
    except KeyboardInterrupt:
        return 130


def _run(args: argparse.Namespace) -> int:
    sources = collect_sources(args.images, recursive=args.recursive)
    out = sys.stdout
    exit_code = EXIT_OK
    try:
        with Client(
            args.url,
            timeout=args.timeout,
            retries=args.retries,
            max_files_per_request=args.batch_size,
            concurrency=args.concurrency,
        ) as client:
            progress = _Progress(len(sources)) if _wants_progress(args, sources) else None
            try:
                ask = client.read_all if args.command == "read" else client.predict_all
                for result in ask(sources, on_progress=progress.advance if progress else None):
                    if progress:
                        progress.clear()
                    _print_result(result, out, as_json=args.json)
                    exit_code = max(exit_code, _exit_code_for(result))
            finally:
                if progress:
                    progress.clear()
    except ServerUnavailable as exc:
        _error(f"server unavailable: {exc.message}")
        return EXIT_UNAVAILABLE
    except httpx.InvalidURL as exc:
        _error(f"invalid --url: {exc}")
        return EXIT_USAGE
    return exit_code


def _wants_progress(args: argparse.Namespace, sources: list) -> bool:
    return not args.no_progress and sys.stderr.isatty() and len(sources) > 1


def _exit_code_for(result: Result | ReadResult) -> int:
    if isinstance(result, Prediction | Reading):
        return EXIT_OK
    if isinstance(result.error, UnreadableFile):
        return EXIT_UNREADABLE
    if isinstance(result.error, RequestRejected):
        return EXIT_REJECTED
    return EXIT_UNEXPECTED


def _print_result(result: Result | ReadResult, out: TextIO, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(_as_dict(result)), file=out, flush=True)
    elif isinstance(result, Reading):
        print(f"{result.filename}  {_describe_reading(result)}", file=out, flush=True)
    elif isinstance(result, Prediction) and not result.is_digit:
        # The likeliest digit of an image that holds none is no answer: not shown.
        score = "" if result.digit_score is None else f" (score {result.digit_score:.2f})"
        print(f"{result.filename}  not a digit{score}", file=out, flush=True)
    elif isinstance(result, Prediction):
        bar = _probability_bar(result.probabilities, out)
        print(
            f"{result.filename}  {result.digit}  {result.confidence:6.1%}  {bar}",
            file=out,
            flush=True,
        )
    else:
        _error(_describe_failure(result))


def _describe_reading(reading: Reading) -> str:
    """`2024  98.7%`, with the segments that are no digit counted after it."""
    text = f"{reading.text}  {reading.confidence:6.1%}" if reading.text else "no digits read"
    others = sum(not digit.is_digit for digit in reading.digits)
    if others:
        text += f"  ({others} {'mark' if others == 1 else 'marks'} not a digit)"
    return text


def _as_dict(result: Result | ReadResult) -> dict:
    if isinstance(result, Reading):
        return {
            "filename": result.filename,
            "text": result.text,
            "confidence": result.confidence,
            "digits": [
                {
                    "digit": digit.digit,
                    "confidence": digit.confidence,
                    "is_digit": digit.is_digit,
                    "digit_score": digit.digit_score,
                    "probabilities": list(digit.probabilities),
                    "box": dict(zip(("x", "y", "width", "height"), digit.box, strict=True)),
                }
                for digit in result.digits
            ],
            "model": {"name": result.model_name, "version": result.model_version},
        }
    if isinstance(result, Prediction):
        return {
            "filename": result.filename,
            "digit": result.digit,
            "confidence": result.confidence,
            "is_digit": result.is_digit,
            "digit_score": result.digit_score,
            "probabilities": list(result.probabilities),
            "model": {"name": result.model_name, "version": result.model_version},
        }
    error = result.error
    body: dict = {"kind": type(error).__name__, "message": error.message}
    if isinstance(error, RequestRejected):
        body |= {"status": error.status, "code": error.code, "request_id": error.request_id}
    return {"filename": result.filename, "error": body}


def _describe_failure(failure: Failure) -> str:
    error = failure.error
    if isinstance(error, RequestRejected):
        return f"{failure.filename}: rejected ({error.status} {error.code}): {error.message}"
    return f"{failure.filename}: {error.message}"


def _probability_bar(probabilities: tuple[float, ...], out: TextIO) -> str:
    """One cell per digit 0-9, taller for more probable: `0▁▁▁▁▁▁▁█▁▁9`."""
    blocks = SPARK_BLOCKS if _can_encode(out, SPARK_BLOCKS) else SPARK_ASCII
    top = len(blocks) - 1
    cells = "".join(blocks[min(top, round(p * top))] for p in probabilities)
    return f"0{cells}9"


def _can_encode(out: TextIO, text: str) -> bool:
    try:
        text.encode(out.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def _error(message: str) -> None:
    print(f"mnist-client: {message}", file=sys.stderr, flush=True)


class _Progress:
    """A one-line bar on stderr, redrawn in place; cleared before any result is printed."""

    WIDTH = 30

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.shown = False

    def advance(self, count: int) -> None:
        self.done += count
        filled = self.WIDTH * self.done // self.total
        bar = "#" * filled + "." * (self.WIDTH - filled)
        sys.stderr.write(f"\r[{bar}] {self.done}/{self.total} images")
        sys.stderr.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self.shown = False


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


if __name__ == "__main__":
    sys.exit(main())
