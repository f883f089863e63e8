"""Benchmark scripts: they print numbers, they are not tests. Run as `python -m benchmarks.<name>`."""

import stages  # noqa: F401  (before any module imports TensorFlow: filters its start-up lines)
