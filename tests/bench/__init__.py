"""bench/: what of the benchmarks can be checked without a model or a gateway."""
