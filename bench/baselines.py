"""Baseline endpoints the gateway is measured against, served exactly like the gateway.

    uvicorn factory: bench.baselines:create_app  (BENCH_EXPORT_DIR, BENCH_KERAS_PATH)

- POST /upload     reads the multipart `file` parts and returns their size: what the
                   framework costs for an upload, the gateway's ceiling;
- POST /signature  decodes and preprocesses like the gateway, then calls the SavedModel
                   signature once per request, no batching (a plain, decent endpoint);
- POST /naive      the same, but Keras `model.predict` per request (what tutorials write);
- GET  /healthz    nothing at all.
The routes are plain `def` where they compute, so FastAPI runs them in its thread pool,
as such endpoints usually are.
"""

import os
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import FastAPI, File, UploadFile

from contract import INPUT_KEY, OUTPUT_KEY, SIGNATURE_NAME
from serving.preprocessing import preprocess

MAX_PIXELS = 40_000_000
Files = Annotated[list[UploadFile], File()]


def create_app() -> FastAPI:
    """Factory for uvicorn: model paths from BENCH_EXPORT_DIR / BENCH_KERAS_PATH, read once."""
    return build_app(
        export_dir=Path(os.environ["BENCH_EXPORT_DIR"]),
        keras_path=Path(os.environ["BENCH_KERAS_PATH"]),
    )


def build_app(export_dir: Path, keras_path: Path) -> FastAPI:
    import keras
    import tensorflow as tf

    signature = tf.saved_model.load(str(export_dir)).signatures[SIGNATURE_NAME]
    model = keras.saving.load_model(keras_path)
    app = FastAPI()

    def inputs(files: list[UploadFile]) -> np.ndarray:
        return np.stack([preprocess(f.file.read(), max_pixels=MAX_PIXELS) for f in files])

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.post("/upload")
    async def upload(file: Files) -> dict:
        sizes = [len(await part.read()) for part in file]
        return {"files": len(sizes), "bytes": sum(sizes)}

    @app.post("/signature")
    def signature_endpoint(file: Files) -> dict:
        outputs = signature(**{INPUT_KEY: tf.constant(inputs(file))})[OUTPUT_KEY].numpy()
        return _answer(outputs)

    @app.post("/naive")
    def naive(file: Files) -> dict:
        return _answer(model.predict(inputs(file), verbose=0))

    return app


def _answer(probabilities: np.ndarray) -> dict:
    return {
        "predictions": [
            {"digit": int(np.argmax(row)), "probabilities": [float(p) for p in row]}
            for row in probabilities
        ]
    }
