"""The launcher: validated settings in, uvicorn running the gateway out."""

import os
import shutil
import sys
import tempfile

import uvicorn

from serving import preprocessing
from serving.app import MULTIPROC_DIR_VARIABLE
from serving.nodelay import NoDelayHttpProtocol
from serving.settings import Settings, SettingsError, load_settings

APP_FACTORY = "serving.app:app_from_env"


def logging_config(level: str) -> dict:
    """One line per event with the worker's pid; uvicorn's access log is replaced by ours."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "plain": {"format": "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"}
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            "uvicorn": {"level": level.upper()},
            "uvicorn.access": {"level": "WARNING"},
        },
    }


def serve(settings: Settings, app: str = APP_FACTORY) -> None:
    """Run uvicorn; with several workers, metrics are shared through a multiprocess dir."""
    if settings.workers > 1:
        # Compiled (or found in numba's cache) once here: the workers then load it
        # instead of each compiling the same kernels at once.
        preprocessing.warm_up()
    own_metrics_dir = None
    if settings.workers > 1 and not os.environ.get(MULTIPROC_DIR_VARIABLE):
        # prometheus_client reads this at import in each worker: set it before they start.
        own_metrics_dir = tempfile.mkdtemp(prefix="gateway-metrics-")
        os.environ[MULTIPROC_DIR_VARIABLE] = own_metrics_dir
    try:
        uvicorn.run(
            app,
            factory=True,
            # Not stock "httptools": with workers > 1 it leaves Nagle on (see serving.nodelay).
            http=NoDelayHttpProtocol,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            loop=settings.event_loop,
            log_level=settings.log_level,
            log_config=logging_config(settings.log_level),
            access_log=False,
        )
    finally:
        if own_metrics_dir is not None:
            shutil.rmtree(own_metrics_dir, ignore_errors=True)


def main() -> int:
    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"mnist-gateway: {error}", file=sys.stderr)
        return 2
    serve(settings)
    return 0
