"""Command line of the training job: `python -m training` or `mnist-train`.

The only place that reads the environment (MNIST_NPZ); everything below gets paths.
"""

import argparse
import logging
import os
import sys
from pathlib import Path

from contract import MODEL_NAME
from training.data import DataError, load_mnist

EXIT_OK = 0
EXIT_DATA = 3
EXIT_GATE = 4
EXIT_EXPORT_BASE = 5
DATA_ENV = "MNIST_NPZ"
DEFAULT_MODEL = "convnet-bn-lite"  # training.models.DEFAULT_MODEL; checked by a test
PROFILES = ("fast", "best")
PROGRESS = {"bar": 1, "epoch": 2, "none": 0}

log = logging.getLogger("training")


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction between 0 and 1")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def check_export_base(export_base: Path) -> str | None:
    """Why the export base is unusable, or None: found before training, not after it."""
    target = export_base / MODEL_NAME
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        return f"cannot create {target} ({error.strerror})"
    if not os.access(target, os.W_OK | os.X_OK):
        return f"cannot write to {target}"
    return None


class _Parser(argparse.ArgumentParser):
    def format_help(self) -> str:
        # The ladder's descriptions come from training.models, which imports TensorFlow
        # (seconds, and log lines on stderr): only --help pays for it.
        from training.models import LADDER

        ladder = "\n".join(
            f"  {name:15} {stage.description} (fast: {stage.recipe.fast_epochs} epochs, "
            f"best: {stage.recipe.best_epochs})"
            for name, stage in LADDER.items()
        )
        epilog = self.epilog
        self.epilog = f"models (--model):\n{ladder}\n\n{epilog}"
        try:
            return super().format_help()
        finally:
            self.epilog = epilog


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mnist-train",
        description=(
            "Train one stage of the MNIST model ladder, evaluate it on the 10k test set and "
            "export it as a versioned TF Serving SavedModel: EXPORT_BASE/mnist/<N>/ with "
            "metadata.json, report.png and TF Serving warm-up requests."
        ),
        epilog=(
            "exit status: 0 exported; 2 bad flags or model name; "
            f"{EXIT_DATA} MNIST could not be loaded; "
            f"{EXIT_GATE} test accuracy below --min-accuracy (nothing exported); "
            f"{EXIT_EXPORT_BASE} the export base is not writable.\n"
            "TensorBoard: tensorboard --logdir runs"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        metavar="NAME",
        help="ladder stage to train, listed below (default: %(default)s)",
    )
    parser.add_argument(
        "--profile",
        choices=PROFILES,
        default="fast",
        help="fast: few epochs, >=99%% for the convnets in minutes on a CPU; best: the "
        "longer schedule (default: %(default)s)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        metavar="PATH",
        help=f"MNIST npz in the Keras layout (default: ${DATA_ENV}, else Keras' download)",
    )
    parser.add_argument(
        "--export-base",
        type=Path,
        default=Path("models"),
        metavar="DIR",
        help="export base; the model lands in DIR/mnist/<next version>/ (default: %(default)s)",
    )
    parser.add_argument(
        "--epochs", type=_positive, metavar="N", help="override the profile's epoch count"
    )
    parser.add_argument(
        "--batch-size", type=_positive, metavar="N", help="override the model's batch size"
    )
    parser.add_argument(
        "--seed", type=int, default=0, metavar="N", help="random seed (default: %(default)s)"
    )
    parser.add_argument(
        "--deterministic",
        action="store_true",
        help="make TensorFlow ops deterministic too (slower; same seed, same weights)",
    )
    parser.add_argument(
        "--min-accuracy",
        type=_fraction,
        metavar="X",
        help="refuse to export (exit status 4) if test accuracy is below X, e.g. 0.99",
    )
    parser.add_argument(
        "--logdir",
        type=Path,
        default=Path("runs"),
        metavar="DIR",
        help="TensorBoard logs go to DIR/<model>-<profile>-<UTC time>/ (default: %(default)s)",
    )
    parser.add_argument("--no-tensorboard", action="store_true", help="write no TensorBoard logs")
    parser.add_argument(
        "--no-report", action="store_true", help="skip the report.png next to the export"
    )
    parser.add_argument(
        "--mixed-precision",
        action="store_true",
        help="float16 compute with float32 weights (for GPUs; the softmax stays float32)",
    )
    parser.add_argument(
        "--progress",
        choices=list(PROGRESS),
        default=None,
        help="Keras progress output: a bar per epoch, one line per epoch, or none "
        "(default: bar on a terminal, epoch otherwise)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    data_path = args.data or (Path(os.environ[DATA_ENV]) if os.environ.get(DATA_ENV) else None)
    try:
        data = load_mnist(data_path)
    except DataError as error:
        print(f"mnist-train: {error}", file=sys.stderr)
        return EXIT_DATA

    # Imported late: TensorFlow takes seconds to load, and a bad path needn't wait for it.
    from training.models import LADDER
    from training.train import AccuracyGateError, TrainConfig, train

    if args.model not in LADDER:
        parser.error(f"unknown model {args.model!r}; choose one of {', '.join(LADDER)}")

    problem = check_export_base(args.export_base)
    if problem:
        print(f"mnist-train: {problem}; pass --export-base DIR to a writable directory.",
              file=sys.stderr)  # fmt: skip
        return EXIT_EXPORT_BASE

    progress = args.progress or ("bar" if sys.stdout.isatty() else "epoch")
    config = TrainConfig(
        model=args.model,
        profile=args.profile,
        export_base=args.export_base,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        min_accuracy=args.min_accuracy,
        logdir=None if args.no_tensorboard else args.logdir,
        mixed_precision=args.mixed_precision,
        deterministic=args.deterministic,
        report=not args.no_report,
        verbose=PROGRESS[progress],
    )
    log.info("MNIST from %s: %d train, %d test images", data.source, *data.sizes)
    try:
        result = train(config, data)
    except AccuracyGateError as error:
        print(f"mnist-train: {error}", file=sys.stderr)
        return EXIT_GATE
    print(f"exported {result.export_dir} (test accuracy {result.test_accuracy:.4f})")
    return EXIT_OK
