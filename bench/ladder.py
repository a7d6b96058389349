"""Train every ladder stage and tabulate parameters, epochs, seconds per epoch and accuracy.

    python bench/ladder.py --data /path/to/mnist.npz --profile fast --write-doc

By default each stage goes through the real training job (training.train: tf.data,
TensorFlow). `--keras-only` trains the same models with the same recipes through plain
Keras `fit` on in-memory arrays instead, so the table can be made on a machine that has
a Keras backend (JAX, PyTorch) but no TensorFlow, such as the GPU machine this repo's
figures came from; nothing is exported then.

`--write-doc` replaces the table between `<!-- ladder:NAME -->` and `<!-- /ladder:NAME -->`
in docs/training.md (NAME from --table, default <device>-<profile>).
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

DOC = REPO_ROOT / "docs" / "training.md"
TARGET = 0.99


def _device_name() -> str:
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            device = jax.devices()[0]
            return device.device_kind if device.platform == "gpu" else "cpu"
        if backend == "torch":
            import torch

            return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
    except Exception:  # a device name is a label, not worth failing a benchmark over
        return "unknown"
    return "cpu"


def _cpu_label() -> str:
    return f"{os.cpu_count()}-core CPU ({platform.machine()})"


def run_with_training_job(name: str, profile: str, data, epochs: int | None, seed: int) -> dict:
    from training.train import TrainConfig, train

    with tempfile.TemporaryDirectory(prefix="ladder-") as export_base:
        config = TrainConfig(
            model=name, profile=profile, export_base=Path(export_base), epochs=epochs,
            seed=seed, logdir=None, report=False, verbose=2,
        )  # fmt: skip
        metadata = train(config, data).metadata
    return {
        "model": name,
        "parameters": metadata["parameters"],
        "epochs": metadata["epochs"],
        "batch_size": metadata["batch_size"],
        "seconds": metadata["training_seconds"],
        "seconds_per_epoch": metadata["seconds_per_epoch"],
        "test_accuracy": metadata["test_accuracy"],
        "seconds_to_99": metadata["seconds_to_99_percent"],
        "val_accuracy": metadata["history"]["val_accuracy"],
    }


def run_with_keras_only(
    name: str, profile: str, data, epochs: int | None, seed: int, mixed: bool
) -> dict:
    """The training job's splits (digits and negatives, validation carved from the
    training images) and recipe through plain `fit`; the test figure is the digit
    accuracy, uncalibrated (argmax of the ten digit logits)."""
    import keras
    import numpy as np

    from contract import NUM_CLASSES
    from training.data import to_model_input
    from training.models import LADDER, NUM_OUTPUTS
    from training.recipes import EpochClock, compile_for_training, epochs_for, seconds_to_reach
    from training.splits import make_splits, with_negatives

    keras.utils.set_random_seed(seed)
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if mixed else "float32")
    recipe = LADDER[name].recipe
    epochs = epochs or epochs_for(recipe, profile)
    splits = make_splits(data, seed)
    x_train, y_train = with_negatives(splits.x_train, splits.y_train, splits.negatives_train)
    steps = -(-len(x_train) // recipe.batch_size)
    model, trainer = compile_for_training(name, recipe, total_steps=steps * epochs, seed=seed)
    one_hot = np.eye(NUM_OUTPUTS, dtype=np.float32)
    clock = EpochClock()
    started = time.perf_counter()
    history = trainer.fit(
        to_model_input(x_train), one_hot[y_train], batch_size=recipe.batch_size,
        epochs=epochs, shuffle=True, callbacks=[clock], verbose=2,
        validation_data=(to_model_input(splits.x_validation), one_hot[splits.y_validation]),
    ).history  # fmt: skip
    seconds = time.perf_counter() - started
    logits = np.asarray(model.predict(to_model_input(data.x_test), batch_size=1000, verbose=0))
    predicted = logits[:, :NUM_CLASSES].argmax(axis=1)
    return {
        "model": name,
        "parameters": int(model.count_params()),
        "epochs": epochs,
        "batch_size": recipe.batch_size,
        "seconds": round(seconds, 2),
        "seconds_per_epoch": round(seconds / epochs, 2),
        "test_accuracy": round(float(np.mean(predicted == data.y_test)), 6),
        "seconds_to_99": seconds_to_reach(TARGET, history["val_accuracy"], clock.elapsed),
        "val_accuracy": [round(float(v), 6) for v in history["val_accuracy"]],
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| model | parameters | epochs | batch | seconds/epoch | total s | test accuracy "
        "| s to 99% |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        to_99 = "—" if row["seconds_to_99"] is None else f"{row['seconds_to_99']:.1f}"
        lines.append(
            f"| {row['model']} | {row['parameters']:,} | {row['epochs']} | {row['batch_size']} "
            f"| {row['seconds_per_epoch']:.1f} | {row['seconds']:.0f} "
            f"| {row['test_accuracy']:.2%} | {to_99} |"
        )
    return "\n".join(lines)


def write_doc(name: str, conditions: str, rows: list[dict]) -> None:
    start, end = f"<!-- ladder:{name} -->", f"<!-- /ladder:{name} -->"
    block = f"{start}\n{conditions}\n\n{table(rows)}\n{end}"
    text = DOC.read_text() if DOC.exists() else "# Training\n"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + f"\n\n{block}\n"
    DOC.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=os.environ.get("MNIST_NPZ"),
                        help="MNIST npz (default: $MNIST_NPZ)")  # fmt: skip
    parser.add_argument("--profile", choices=("fast", "best"), default="fast")
    parser.add_argument("--models", nargs="+", help="stages to train (default: all)")
    parser.add_argument("--epochs", type=int, help="override every stage's epoch count")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--keras-only",
        action="store_true",
        help="plain Keras fit on arrays (any Keras backend, no TensorFlow)",
    )
    parser.add_argument(
        "--mixed-precision", action="store_true", help="with --keras-only: mixed_bfloat16"
    )
    parser.add_argument("--json", type=Path, help="also write the rows here, after each stage")
    parser.add_argument("--write-doc", action="store_true", help="update docs/training.md")
    parser.add_argument("--table", help="table name in docs/training.md")
    args = parser.parse_args()
    if args.data is None:
        parser.error("pass --data PATH or set MNIST_NPZ")

    from training.data import load_npz
    from training.models import LADDER

    names = args.models or list(LADDER)
    unknown = set(names) - set(LADDER)
    if unknown:
        parser.error(f"unknown models: {', '.join(sorted(unknown))}")
    data = load_npz(Path(args.data))

    import keras

    device = _device_name()
    rows: list[dict] = []
    for name in names:
        print(f"== {name} ({args.profile})", flush=True)
        if args.keras_only:
            row = run_with_keras_only(
                name, args.profile, data, args.epochs, args.seed, args.mixed_precision
            )
        else:
            row = run_with_training_job(name, args.profile, data, args.epochs, args.seed)
        rows.append(row)
        print(table(rows), flush=True)
        if args.json:
            args.json.write_text(json.dumps({"device": device, "rows": rows}, indent=1))

    where = _cpu_label() if device == "cpu" else device
    path = "plain Keras fit on arrays" if args.keras_only else "the training job (tf.data)"
    precision = "mixed bfloat16" if args.mixed_precision else "float32"
    conditions = (
        f"Profile `{args.profile}`, {where}, Keras {keras.__version__} on "
        f"{keras.backend.backend()}, {path}, {precision}, seed {args.seed}, "
        f"{data.sizes[0]:,} train images (a tenth held out for validation, plus negatives) / "
        f"{data.sizes[1]:,} test images, {datetime.now(UTC):%Y-%m-%d}. Seconds include each "
        "epoch's evaluation on the validation split; 's to 99%' is the wall time at the end "
        "of the first epoch whose validation accuracy reached 99%."
    )
    print(f"\n{conditions}\n\n{table(rows)}")
    if args.write_doc:
        write_doc(args.table or f"{'cpu' if device == 'cpu' else 'gpu'}-{args.profile}",
                  conditions, rows)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
