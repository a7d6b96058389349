"""TensorFlow Serving backends: gRPC and REST, and what they share."""
