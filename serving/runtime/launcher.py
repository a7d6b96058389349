"""The launcher: validated settings in, uvicorn running the gateway out (several
workers under `serving.runtime.supervisor`)."""

import logging.config
import os
import shutil
import sys
import tempfile

import uvicorn

from serving import preprocessing
from serving.app import MULTIPROC_DIR_VARIABLE
from serving.runtime.nodelay import NoDelayHttpProtocol
from serving.runtime.supervisor import Supervisor, worker_command
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


def uvicorn_options(event_loop: str, log_level: str) -> dict:
    """How uvicorn runs the app factory, alone or as one of several workers."""
    return {
        "factory": True,
        # Not stock "httptools": TCP_NODELAY however the socket was made (serving.runtime.nodelay).
        "http": NoDelayHttpProtocol,
        "loop": event_loop,
        "log_level": log_level,
        "log_config": logging_config(log_level),
        "access_log": False,
    }


def serve(settings: Settings, app: str = APP_FACTORY) -> int:
    """Run the gateway until a signal stops it; the exit status. Several workers share
    their metrics through a multiprocess dir."""
    options = uvicorn_options(settings.event_loop, settings.log_level)
    if settings.workers == 1:
        uvicorn.run(app, host=settings.host, port=settings.port, **options)
        return 0
    logging.config.dictConfig(options["log_config"])
    # Compiled (or found in numba's cache) once here: the workers then load it instead of
    # each compiling the same kernels at once.
    preprocessing.warm_up()
    own_metrics_dir = None
    if not os.environ.get(MULTIPROC_DIR_VARIABLE):
        # prometheus_client reads this at import in each worker: set it before they start.
        own_metrics_dir = tempfile.mkdtemp(prefix="gateway-metrics-")
        os.environ[MULTIPROC_DIR_VARIABLE] = own_metrics_dir
    try:
        command = worker_command(app, settings.event_loop, settings.log_level)
        return Supervisor(settings.host, settings.port, settings.workers, command).run()
    finally:
        if own_metrics_dir is not None:
            shutil.rmtree(own_metrics_dir, ignore_errors=True)


def main() -> int:
    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"mnist-gateway: {error}", file=sys.stderr)
        return 2
    return serve(settings)
