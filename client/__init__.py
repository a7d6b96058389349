"""Client side of mnist-serving: a Python API, the `mnist-client` CLI and the locust load test."""

from client.api import (
    Client,
    ClientError,
    Failure,
    Prediction,
    ReadDigit,
    Reading,
    RequestRejected,
    ServerUnavailable,
    UnreadableFile,
)

__all__ = [
    "Client",
    "ClientError",
    "Failure",
    "Prediction",
    "ReadDigit",
    "Reading",
    "RequestRejected",
    "ServerUnavailable",
    "UnreadableFile",
]
