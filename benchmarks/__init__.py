"""Benchmark scripts: they print numbers, they are not tests. Run as `python -m benchmarks.<name>`."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before any module imports TensorFlow
