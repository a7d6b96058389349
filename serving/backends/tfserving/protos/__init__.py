"""TF Serving's messages, from the project's own wire-compatible definitions
(tfserving.proto beside this file; tfserving_pb2.py is generated from it)."""
