"""Helpers the tests share: image files, the tiny model, gateway processes, TF Serving."""
