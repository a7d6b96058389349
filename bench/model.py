"""The benchmark's model: the seed convnet, trained briefly on the committed sample.

Throughput does not depend on accuracy, so a minute of training is enough; the same
weights are saved as a SavedModel export (what the gateway serves) and as a `.keras`
file (what the naive baseline calls `predict` on).
"""

from pathlib import Path

import numpy as np

SAMPLE_PATH = Path(__file__).resolve().parent.parent / "data" / "mnist-sample.npz"


def build_bench_model(workdir: Path) -> tuple[Path, Path]:
    """(export base holding mnist/1, .keras file), reused when already in `workdir`."""
    import keras

    from training.export import existing_versions, export_model
    from training.models import LADDER

    export_base = workdir / "export"
    keras_path = workdir / "convnet.keras"
    workdir.mkdir(parents=True, exist_ok=True)
    if existing_versions(export_base) and keras_path.exists():
        return export_base, keras_path
    with np.load(SAMPLE_PATH) as data:
        x = (data["x_train"][..., None] / 255.0).astype(np.float32)
        y = data["y_train"]
    keras.utils.set_random_seed(0)
    model = LADDER["convnet"].build()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, batch_size=64, verbose=0)
    model.save(keras_path)
    export_model(model, export_base, {"model": "convnet", "purpose": "benchmark"}, x[:8])
    return export_base, keras_path
